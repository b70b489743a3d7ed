"""``GET /api/proxy/v1/models`` and ``/models/{id}``: what the caller can reach, in OpenAI's shape.

Thin views over ``proxy.model_access``; the catalogue is cached in process, so a list costs
one query (the caller's provider keys, none with the sandbox on).
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from core.schema import error_responses

from .call.view import ProxyApiView
from .dbcall import db_call
from .model_access import model_not_found_error, model_object, models_reachable_get

MODEL_SERIALIZER = inline_serializer(
    name="ProxyModel",
    fields={
        "id": serializers.CharField(),
        "object": serializers.CharField(),
        "created": serializers.IntegerField(),
        "owned_by": serializers.CharField(),
    },
)


class ModelListApi(ProxyApiView):
    """``GET /api/proxy/v1/models``: every model the caller's plan and keys reach, with its owner."""

    @extend_schema(
        operation_id="proxy_models_list",
        summary="Models your plan and keys reach",
        tags=["proxy"],
        responses={
            200: inline_serializer(
                name="ProxyModelList",
                fields={"object": serializers.CharField(), "data": MODEL_SERIALIZER.__class__(many=True)},
            ),
            **error_responses(401, 429, negotiated=False),
        },
    )
    async def get(self, request):
        models = await db_call(models_reachable_get, workspace=self.workspace, plan=self.plan)
        return Response({"object": "list", "data": [model_object(m, o) for m, o in models.items()]})


class ModelRetrieveApi(ProxyApiView):
    """``GET /api/proxy/v1/models/{id}``: one reachable model, else 404 ``model_not_found``."""

    @extend_schema(
        operation_id="proxy_models_retrieve",
        summary="One model your plan and keys reach",
        tags=["proxy"],
        responses={200: MODEL_SERIALIZER, **error_responses(401, 404, 429, negotiated=False)},
    )
    async def get(self, request, model: str):
        models = await db_call(models_reachable_get, workspace=self.workspace, plan=self.plan)
        owner = models.get(model)
        if owner is None:
            raise model_not_found_error(model)
        return Response(model_object(model, owner))
