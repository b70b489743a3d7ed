"""Workspace API: workspaces, members, invitations and the audit log. Thin doors to
``accounts.services.workspaces`` and ``accounts.workspace_selectors``.

An endpoint whose URL names a workspace (``/api/workspaces/{workspace_id}/…``) derives from
``WorkspaceApi``: it resolves the caller's membership (404 for a non-member) and requires the
action its ``permission_required`` declares for the method before the handler runs, so the
declaration is the check. The permission-matrix test walks ``accounts.workspace_urls`` and fails
for a method that declares nothing.
"""

from __future__ import annotations

from typing import ClassVar

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from core.exceptions import ApiError
from core.schema import ErrorResponseSerializer, error_responses, schema_named

from .models import Role
from .selectors import member_limits_usage_get
from .services.member_limits import membership_limits_set
from .services.workspaces import (
    WORKSPACE_NAME_MAX_LENGTH,
    invitation_accept,
    invitation_create,
    invitation_revoke,
    membership_remove,
    membership_role_change,
    workspace_create,
    workspace_delete,
    workspace_update,
)
from .tenancy import WorkspaceContext
from .workspace_selectors import (
    audit_event_list,
    invitation_pending_list,
    membership_list,
    workspace_member_context_get,
    workspace_memberships_for_user,
)

GONE = {
    410: OpenApiResponse(
        response=ErrorResponseSerializer,
        description="The invitation was already used, revoked or has expired (`invitation_gone`).",
    )
}
NOT_EMPTY = (
    "Refused with 409: a personal workspace (`conflict`), or one that still holds something "
    "(`workspace_not_empty`, with `reasons`: live API keys, a subscription, a credit balance…)."
)


def key_workspace_id(request) -> int | None:
    """The workspace of the proxy key the request authenticated with (None for a session or a
    DRF token): such a request acts on that workspace only."""
    return getattr(request.auth, "workspace_id", None)


class WorkspaceApi(APIView):
    """An endpoint of one workspace (``workspace_id`` in the URL).

    ``permission_required`` maps each method to the action it needs (``accounts.roles``);
    ``self_service`` maps a method to the URL argument that, when it is the caller's own user
    id, needs no action (leaving a workspace). ``self.ctx`` is the caller's ``WorkspaceContext``.
    """

    permission_required: ClassVar[dict[str, str]] = {}
    self_service: ClassVar[dict[str, str]] = {}
    ctx: WorkspaceContext

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authentication first: anonymous is a 401
        method = "get" if request.method.lower() == "head" else request.method.lower()
        if not hasattr(self, method) or method == "options":
            return  # DRF answers 405 (or the metadata) for it
        if method not in self.permission_required:
            raise ImproperlyConfigured(f"{type(self).__name__}.{method} declares no permission_required")
        self.ctx = workspace_member_context_get(
            user=request.user, workspace_id=kwargs["workspace_id"], key_workspace_id=key_workspace_id(request)
        )
        own_kwarg = self.self_service.get(method)
        if own_kwarg is None or str(kwargs.get(own_kwarg)) != str(request.user.pk):
            self.ctx.require(self.permission_required[method])


class RoleField(serializers.ChoiceField):
    """A workspace role (``accounts.models.Role``)."""

    def __init__(self, **kwargs):
        super().__init__(choices=Role.choices, **kwargs)


class RoleFieldSchema(OpenApiSerializerFieldExtension):
    """``RoleField`` is the ``WorkspaceRole`` component: the proxy's chat messages have a
    ``role`` of their own, and two choice sets under one field name would get a hashed name."""

    target_class = RoleField

    def map_serializer_field(self, auto_schema, direction):
        component = ResolvedComponent(
            name="WorkspaceRole",
            type=ResolvedComponent.SCHEMA,
            object="WorkspaceRole",
            schema={
                "type": "string",
                "enum": list(Role.values),
                "description": "A member's role in a workspace (see docs/workspaces.md).",
            },
        )
        auto_schema.registry.register_on_missing(component)
        return component.ref


class WorkspaceOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    slug = serializers.CharField()
    role = RoleField()
    personal = serializers.BooleanField()


def _workspace_payload(workspace, role: str) -> dict:
    return {
        "id": workspace.pk,
        "name": workspace.name,
        "slug": workspace.slug,
        "role": role,
        "personal": workspace.personal,
    }


class WorkspaceNameSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=WORKSPACE_NAME_MAX_LENGTH)


@schema_named
class WorkspaceListCreateApi(APIView):
    # Any signed-in user lists their own workspaces and creates new ones (as their owner).
    permission_required: ClassVar[dict[str, str | None]] = {"get": None, "post": None}

    @extend_schema(
        operation_id="workspaces_list",
        summary="Your workspaces",
        description="Every workspace you are a member of, with your role; your personal one first. "
        "Called with a proxy key: that key's workspace only.",
        tags=["workspaces"],
        responses={200: WorkspaceOutputSerializer(many=True), **error_responses(401)},
    )
    def get(self, request):
        memberships = workspace_memberships_for_user(user=request.user)
        scoped = key_workspace_id(request)
        if scoped is not None:
            memberships = memberships.filter(workspace_id=scoped)
        payload = [_workspace_payload(m.workspace, m.role) for m in memberships]
        return Response(WorkspaceOutputSerializer(payload, many=True).data)

    @extend_schema(
        operation_id="workspaces_create",
        summary="Create a team workspace",
        description="You become its owner. Invite members with `POST /api/workspaces/{id}/invitations`.",
        tags=["workspaces"],
        request=WorkspaceNameSerializer,
        responses={201: WorkspaceOutputSerializer, **error_responses(400, 401, 413, 415)},
    )
    def post(self, request):
        data = WorkspaceNameSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        workspace = workspace_create(user=request.user, name=data.validated_data["name"], request=request)
        return Response(
            WorkspaceOutputSerializer(_workspace_payload(workspace, Role.OWNER)).data,
            status=status.HTTP_201_CREATED,
        )


@schema_named
class WorkspaceDetailApi(WorkspaceApi):
    permission_required: ClassVar[dict[str, str]] = {
        "get": "workspace.read",
        "patch": "workspace.update",
        "delete": "workspace.delete",
    }

    @extend_schema(
        operation_id="workspaces_get",
        summary="One of your workspaces",
        description="Another workspace's id (or one that does not exist) answers 404.",
        tags=["workspaces"],
        responses={200: WorkspaceOutputSerializer, **error_responses(401, 404)},
    )
    def get(self, request, workspace_id: int):
        return Response(WorkspaceOutputSerializer(_workspace_payload(self.ctx.workspace, self.ctx.role)).data)

    @extend_schema(
        operation_id="workspaces_update",
        summary="Rename a workspace",
        description="Owners and admins. The slug does not change.",
        tags=["workspaces"],
        request=WorkspaceNameSerializer,
        responses={200: WorkspaceOutputSerializer, **error_responses(400, 401, 403, 404, 413, 415)},
    )
    def patch(self, request, workspace_id: int):
        data = WorkspaceNameSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        workspace = workspace_update(
            workspace=self.ctx.workspace,
            actor=request.user,
            name=data.validated_data["name"],
            request=request,
        )
        return Response(WorkspaceOutputSerializer(_workspace_payload(workspace, self.ctx.role)).data)

    @extend_schema(
        operation_id="workspaces_delete",
        summary="Delete a workspace",
        description="Owners only. " + NOT_EMPTY,
        tags=["workspaces"],
        request=None,
        responses={204: None, **error_responses(401, 403, 404, 409)},
    )
    def delete(self, request, workspace_id: int):
        workspace_delete(workspace=self.ctx.workspace, actor=request.user, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberLimitUsageSerializer(serializers.Serializer):
    unit = serializers.ChoiceField(choices=["money", "credits"])
    window = serializers.ChoiceField(choices=["month"])
    amount = serializers.IntegerField()  # money: minor units (cents) of ``currency``
    used = serializers.IntegerField(allow_null=True)  # by all the member's keys, settled + in flight
    resets_at = serializers.DateTimeField(allow_null=True)
    currency = serializers.CharField(allow_null=True, required=False, default=None)


class MemberOutputSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    email = serializers.EmailField(source="user.email")
    role = RoleField()
    joined_at = serializers.DateTimeField(source="created_at")
    # The member's monthly spend caps over every key they created here, with this month's use.
    limits = serializers.SerializerMethodField()

    @extend_schema_field(MemberLimitUsageSerializer(many=True))
    def get_limits(self, membership) -> list[dict]:
        usage = (self.context.get("limits_usage") or {}).get(membership.pk)
        if usage is None:
            usage = member_limits_usage_get(memberships=[membership]).get(membership.pk, [])
        return MemberLimitUsageSerializer(usage, many=True).data


@schema_named
class MemberListApi(WorkspaceApi):
    permission_required: ClassVar[dict[str, str]] = {"get": "members.read"}

    @extend_schema(
        operation_id="workspace_members_list",
        summary="Members of a workspace",
        description="Owners first, then admins, billing and developers; by email within a role.",
        tags=["workspaces"],
        responses={200: MemberOutputSerializer(many=True), **error_responses(401, 404)},
    )
    def get(self, request, workspace_id: int):
        memberships = list(membership_list(workspace=self.ctx.workspace))
        usage = member_limits_usage_get(memberships=memberships)
        return Response(MemberOutputSerializer(memberships, many=True, context={"limits_usage": usage}).data)


class RevokedKeySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField()


@schema_named
class MemberDetailApi(WorkspaceApi):
    permission_required: ClassVar[dict[str, str]] = {"patch": "members.manage", "delete": "members.manage"}
    self_service: ClassVar[dict[str, str]] = {"delete": "user_id"}  # anyone may leave

    class InputSerializer(serializers.Serializer):
        role = RoleField(required=False)
        limits = serializers.ListField(required=False)  # items validated by the service

    class RemovedSerializer(serializers.Serializer):
        revoked_keys = RevokedKeySerializer(many=True)

    @extend_schema(
        operation_id="workspace_members_update",
        summary="Change a member's role or monthly spend caps",
        description="Owners and admins; only an owner changes an owner's role or caps, or makes an owner "
        "(else 403). The last owner cannot be demoted (409 `last_owner`). A personal workspace has one "
        "owner (409). `limits`: `[{unit: money|credits, amount}]` (window `month`; money in minor units "
        "of the plan's currency; `[]` lifts them): what all the keys the member created may spend "
        "together each month. Enforced by the proxy from the next call: 429 `member_limit_exceeded`.",
        tags=["workspaces"],
        request=InputSerializer,
        responses={200: MemberOutputSerializer, **error_responses(400, 401, 403, 404, 409, 413, 415)},
    )
    def patch(self, request, workspace_id: int, user_id: int):
        if not isinstance(request.data, dict):
            raise ApiError("invalid_request", "The body must be a JSON object.")
        unknown = set(request.data) - {"role", "limits"}
        if unknown:
            raise ApiError(
                "invalid_request", f"Unknown field: {sorted(unknown)[0]}.", param=sorted(unknown)[0]
            )
        if not request.data:
            raise ApiError("invalid_request", "Give role and/or limits.", param="role")
        data = self.InputSerializer(data={"role": request.data["role"]} if "role" in request.data else {})
        data.is_valid(raise_exception=True)
        with transaction.atomic():
            if "role" in request.data:
                membership = membership_role_change(
                    workspace=self.ctx.workspace,
                    actor=request.user,
                    user_id=user_id,
                    role=data.validated_data["role"],
                    request=request,
                )
            if "limits" in request.data:
                membership = membership_limits_set(
                    workspace=self.ctx.workspace,
                    actor=request.user,
                    user_id=user_id,
                    limits=request.data["limits"],
                    request=request,
                )
        return Response(MemberOutputSerializer(membership).data)

    @extend_schema(
        operation_id="workspace_members_remove",
        summary="Remove a member, or leave",
        description="Owners and admins remove members (only an owner removes an owner); anyone may remove "
        "themselves (leave). The last owner cannot leave (409 `last_owner`). The API keys the member "
        "created in this workspace are revoked at once and listed in the answer.",
        tags=["workspaces"],
        request=None,
        responses={200: RemovedSerializer, **error_responses(401, 403, 404, 409)},
    )
    def delete(self, request, workspace_id: int, user_id: int):
        revoked = membership_remove(
            workspace=self.ctx.workspace, actor=request.user, user_id=user_id, request=request
        )
        return Response(self.RemovedSerializer({"revoked_keys": revoked}).data)


class InvitationOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    role = RoleField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    invited_by = serializers.EmailField(source="invited_by.email", allow_null=True, default=None)


@schema_named
class InvitationListCreateApi(WorkspaceApi):
    permission_required: ClassVar[dict[str, str]] = {
        "get": "invitations.manage",
        "post": "invitations.manage",
    }

    class InputSerializer(serializers.Serializer):
        email = serializers.EmailField()
        role = RoleField()

    class CreatedSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        email = serializers.EmailField()
        role = RoleField()
        expires_at = serializers.DateTimeField()
        accept_url = serializers.URLField(
            help_text="Holds the invitation's token: shown here once, and mailed."
        )

    @extend_schema(
        operation_id="workspace_invitations_list",
        summary="Pending invitations",
        description="Not yet accepted, revoked or expired; newest first.",
        tags=["workspaces"],
        responses={200: InvitationOutputSerializer(many=True), **error_responses(401, 403, 404)},
    )
    def get(self, request, workspace_id: int):
        invitations = invitation_pending_list(workspace=self.ctx.workspace)
        return Response(InvitationOutputSerializer(invitations, many=True).data)

    @extend_schema(
        operation_id="workspace_invitations_create",
        summary="Invite someone by email",
        description="Mails a single-use link valid for 7 days. Owners and admins; only an owner invites an "
        "owner. An existing member or an address with a pending invitation answers 409.",
        tags=["workspaces"],
        request=InputSerializer,
        responses={201: CreatedSerializer, **error_responses(400, 401, 403, 404, 409, 413, 415)},
    )
    def post(self, request, workspace_id: int):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        invitation, accept_url = invitation_create(
            workspace=self.ctx.workspace, actor=request.user, request=request, **data.validated_data
        )
        payload = {
            "id": invitation.pk,
            "email": invitation.email,
            "role": invitation.role,
            "expires_at": invitation.expires_at,
            "accept_url": accept_url,
        }
        return Response(self.CreatedSerializer(payload).data, status=status.HTTP_201_CREATED)


class InvitationDetailApi(WorkspaceApi):
    permission_required: ClassVar[dict[str, str]] = {"delete": "invitations.manage"}

    @extend_schema(
        operation_id="workspace_invitations_revoke",
        summary="Revoke an invitation",
        description="Its link stops working. Only an owner revokes an owner's invitation; an accepted one "
        "answers 409.",
        tags=["workspaces"],
        request=None,
        responses={204: None, **error_responses(401, 403, 404, 409)},
    )
    def delete(self, request, workspace_id: int, invitation_id: int):
        invitation_revoke(
            workspace=self.ctx.workspace, actor=request.user, invitation_id=invitation_id, request=request
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


@schema_named
class InvitationAcceptApi(APIView):
    # Any signed-in user; the service checks the invitation is addressed to them.
    permission_required: ClassVar[dict[str, str | None]] = {"post": None}

    class InputSerializer(serializers.Serializer):
        token = serializers.CharField(max_length=200)

    class OutputSerializer(serializers.Serializer):
        workspace = WorkspaceOutputSerializer()
        role = RoleField()

    @extend_schema(
        operation_id="invitations_accept",
        summary="Accept an invitation",
        description="The token is the last part of the invitation's link. The signed-in account's email "
        "must be the invited one (else 403); unknown token: 404; already used, revoked or expired: 410 "
        "`invitation_gone`; already a member: 409.",
        tags=["workspaces"],
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(400, 401, 403, 404, 409, 413, 415), **GONE},
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = invitation_accept(user=request.user, token=data.validated_data["token"], request=request)
        payload = {
            "workspace": _workspace_payload(membership.workspace, membership.role),
            "role": membership.role,
        }
        return Response(self.OutputSerializer(payload).data)


class AuditCursorPagination(CursorPagination):
    """Newest first; ``?cursor=`` from ``next``/``previous``, ``?page_size=`` up to 200."""

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class AuditEventSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    action = serializers.CharField()
    actor = serializers.CharField(source="actor_email", help_text="The actor's email ('' for the system).")
    target = serializers.CharField()
    details = serializers.JSONField()
    ip = serializers.IPAddressField(allow_null=True)


@schema_named
class AuditEventListApi(WorkspaceApi):
    permission_required: ClassVar[dict[str, str]] = {"get": "audit.read"}

    class PageSerializer(serializers.Serializer):
        next = serializers.URLField(allow_null=True)
        previous = serializers.URLField(allow_null=True)
        results = AuditEventSerializer(many=True)

    @extend_schema(
        operation_id="workspace_audit_list",
        summary="The workspace's audit log",
        description="Every change to its people, keys and money, newest first. Cursor-paginated: follow "
        "`next` (an opaque `cursor`); `page_size` up to 200 (default 50). Owners and admins.",
        tags=["workspaces"],
        parameters=[
            OpenApiParameter("cursor", str, OpenApiParameter.QUERY, description="From `next` or `previous`."),
            OpenApiParameter("page_size", int, OpenApiParameter.QUERY, description="1–200, default 50."),
        ],
        responses={200: PageSerializer, **error_responses(401, 403, 404)},
    )
    def get(self, request, workspace_id: int):
        paginator = AuditCursorPagination()
        events = paginator.paginate_queryset(
            audit_event_list(workspace=self.ctx.workspace), request, view=self
        )
        payload = {
            "next": paginator.get_next_link(),
            "previous": paginator.get_previous_link(),
            "results": events,
        }
        return Response(self.PageSerializer(payload).data)
