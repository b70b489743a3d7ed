"""The OpenAPI schema at /api/schema/ is generated cleanly and says what the views really answer."""

from __future__ import annotations

import jsonschema
import pytest
from drf_spectacular.drainage import GENERATOR_STATS, warn
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from accounts.tests.factories import StaffUserFactory, UserFactory, api_key_for
from core.exceptions import ApiError
from organizations.tests.factories import OrganizationFactory
from proxy.catalog import proxy_catalog_seed
from proxy.tests.factories import global_key_set, key_for, plan_configure


def _generate() -> tuple[dict, list[str]]:
    GENERATOR_STATS.reset()
    with GENERATOR_STATS.silence():
        schema = SchemaGenerator().get_schema(request=None, public=True)
    messages = list(GENERATOR_STATS._warn_cache) + list(GENERATOR_STATS._error_cache)
    GENERATOR_STATS.reset()
    return schema, messages


@pytest.fixture(scope="module")
def generated():
    return _generate()


@pytest.fixture(scope="module")
def schema(generated):
    return generated[0]


def _operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def _resolve(node, components):
    """The schema as plain JSON Schema: ``$ref`` inlined, OpenAPI 3.0 ``nullable`` as a type."""
    if isinstance(node, list):
        return [_resolve(item, components) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _resolve(components[node["$ref"].rsplit("/", 1)[1]], components)
    resolved = {key: _resolve(value, components) for key, value in node.items() if key != "nullable"}
    if node.get("nullable"):
        if "type" in resolved:
            resolved["type"] = [resolved["type"], "null"]
        else:
            resolved = {"anyOf": [resolved, {"type": "null"}]}
    return resolved


def _response_schema(schema, path, method, status):
    content = schema["paths"][path][method]["responses"][str(status)]["content"]["application/json"]
    return _resolve(content["schema"], schema["components"]["schemas"])


def _assert_conforms(schema, path, method, response):
    jsonschema.validate(response.json(), _response_schema(schema, path, method, response.status_code))


def test_no_warning_or_error(generated):
    _, messages = generated
    assert messages == []


def _is_proxy(operation) -> bool:
    """The proxy answers JSON (or its SSE stream) whatever ``Accept`` says: it never answers 406."""
    return "proxy" in operation.get("tags", [])


def test_generation_problems_are_detected():
    """The capture above really sees spectacular's messages (a view it cannot guess)."""
    GENERATOR_STATS.reset()
    with GENERATOR_STATS.silence():
        warn("probe from core/tests")
    assert any("probe from core/tests" in message for message in GENERATOR_STATS._warn_cache)
    GENERATOR_STATS.reset()


def test_operation_ids_are_explicit_and_unique(schema):
    ids = [operation["operationId"] for _, _, operation in _operations(schema)]
    assert len(ids) == len(set(ids))
    # Explicit ids never carry the generator's path-derived prefix or numeral suffix.
    assert [op_id for op_id in ids if op_id.startswith("api_") or op_id[-1].isdigit()] == []


def _statuses(operation) -> set[int]:
    """Documented statuses; a range such as the proxy's relayed ``4XX`` is left out."""
    return {int(status) for status in operation["responses"] if status.isdigit()}


# Routes whose clients expect another API's error shape (the anthropic SDK's).
OTHER_ENVELOPES = {"/api/proxy/v1/messages": "#/components/schemas/AnthropicError"}


def test_every_error_response_is_the_shared_envelope(schema):
    for path, method, operation in _operations(schema):
        statuses = _statuses(operation)
        assert any(200 <= status < 300 for status in statuses), (path, method)
        assert (406 in statuses) is not _is_proxy(operation), (path, method)
        envelope = OTHER_ENVELOPES.get(path, "#/components/schemas/ErrorResponse")
        for status, response in operation["responses"].items():
            if not status.isdigit() or int(status) >= 400:
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == envelope, (path, method, status)


def test_bodies_authentication_and_staff_errors_are_documented(schema):
    for path, method, operation in _operations(schema):
        statuses = _statuses(operation)
        if "requestBody" in operation:
            assert {400, 413} <= statuses, (path, method)
        if any(requirement for requirement in operation.get("security", [])):
            assert 401 in statuses, (path, method)
        if path.startswith("/api/admin/"):
            assert {401, 403} <= statuses, (path, method)


def test_error_envelope_matches_what_the_handler_renders(schema):
    envelope = _resolve({"$ref": "#/components/schemas/ErrorResponse"}, schema["components"]["schemas"])
    jsonschema.validate(ApiError("not_found", "No such API key.").as_dict(), envelope)
    jsonschema.validate(
        ApiError("invalid_request", "Bad.", param="name", errors={"name": ["x"]}).as_dict(), envelope
    )
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"detail": "Not found."}, envelope)  # DRF's default shape is not ours


@pytest.mark.django_db
def test_real_answers_conform_to_the_documented_schema(schema):
    """Never-used keys (null dates), the free plan (null expiry), an unlinked organization
    (null Stripe ids) and an error body all match what the schema documents."""
    user = UserFactory()
    api_key_for(user)
    client = APIClient()
    client.force_authenticate(user)
    _assert_conforms(schema, "/api/keys", "get", client.get("/api/keys"))
    _assert_conforms(
        schema, "/payment/subscription/status", "get", client.get("/payment/subscription/status")
    )
    _assert_conforms(schema, "/api/billing/subscription", "get", client.get("/api/billing/subscription"))
    _assert_conforms(schema, "/api/credits/balance", "get", client.get("/api/credits/balance"))
    _assert_conforms(schema, "/api/credits/transactions", "get", client.get("/api/credits/transactions"))
    _assert_conforms(schema, "/api/billing/plans", "get", client.get("/api/billing/plans"))
    _assert_conforms(schema, "/api/credits/packs", "get", client.get("/api/credits/packs"))
    missing = client.delete("/api/keys/999999")
    assert missing.status_code == 404
    _assert_conforms(schema, "/api/keys/{key_id}", "delete", missing)

    OrganizationFactory()
    staff = APIClient()
    staff.force_login(StaffUserFactory())
    _assert_conforms(schema, "/api/admin/organizations", "get", staff.get("/api/admin/organizations"))


def test_null_dates_would_not_conform_without_nullable(schema):
    """The conformance check above is strict: a null where the schema says date-time fails."""
    strict = _response_schema(schema, "/api/keys", "get", 200)
    strict["items"]["properties"]["last_used_at"] = {"type": "string", "format": "date-time"}
    row = {
        "id": 1,
        "name": "k",
        "prefix": "sk_agentai_ab",
        "created_by": None,  # the key's creator is gone
        "created_at": "2026-01-01T00:00:00Z",
        "last_used_at": None,
        "revoked_at": None,
        "expires_at": None,
        "limits": [],
        "allowed_models": [],
    }
    jsonschema.validate([row], _response_schema(schema, "/api/keys", "get", 200))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([row], strict)


@pytest.mark.django_db(transaction=True)  # the proxy runs its database blocks in its own threads
def test_proxy_answers_conform_to_the_documented_schema(schema):
    """The proxy's model list, usage, 401 and 415 answers match what its schema documents."""
    plan_configure()
    global_key_set("deepseek")  # the model list shows what the plan and the caller's keys reach
    proxy_catalog_seed()
    _user, plaintext = key_for()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")

    models = client.get("/api/proxy/v1/models")
    assert models.status_code == 200 and models.json()["data"]
    _assert_conforms(schema, "/api/proxy/v1/models", "get", models)
    wrong_type = client.post("/api/proxy/v1/chat/completions", data=b"{}", content_type="text/plain")
    assert wrong_type.status_code == 415
    _assert_conforms(schema, "/api/proxy/v1/chat/completions", "post", wrong_type)
    _assert_conforms(schema, "/api/proxy/usage", "get", client.get("/api/proxy/usage"))
    anonymous = APIClient().get("/api/proxy/usage")
    assert anonymous.status_code == 401
    _assert_conforms(schema, "/api/proxy/usage", "get", anonymous)
