"""Every error under /api/ has the OpenAI shape: {"error": {message, type, code, param, ...}}."""

import pytest
from rest_framework.test import APIClient

from accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _assert_shape(response, status, code, error_type):
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert {"message", "type", "code", "param"} <= set(error)
    assert error["code"] == code
    assert error["type"] == error_type
    assert isinstance(error["message"], str) and error["message"]
    return error


@pytest.fixture
def authed():
    client = APIClient()
    client.force_authenticate(UserFactory())
    return client


def test_400_validation_error_names_the_field(authed):
    error = _assert_shape(
        authed.post("/api/keys", {}, format="json"), 400, "invalid_request", "invalid_request_error"
    )
    assert error["param"] == "name"
    assert "name" in error["errors"]


def test_400_malformed_json():
    client = APIClient()
    client.force_authenticate(UserFactory())
    response = client.post("/api/keys", data='{"name": ', content_type="application/json")
    _assert_shape(response, 400, "invalid_json", "invalid_request_error")


def test_401_without_credentials_and_with_a_bad_key():
    error = _assert_shape(APIClient().get("/api/keys"), 401, "invalid_api_key", "authentication_error")
    assert error["param"] is None
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer sk_agentai_garbage")
    response = client.get("/api/keys")
    _assert_shape(response, 401, "invalid_api_key", "authentication_error")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_403_for_a_non_staff_user_on_a_staff_endpoint(authed):
    response = authed.put("/api/admin/provider-keys/openai", {"key": "sk-abcdefghij"}, format="json")
    _assert_shape(response, 403, "forbidden", "permission_error")


def test_404_for_a_missing_object_and_an_unknown_url(authed):
    _assert_shape(authed.delete("/api/keys/424242"), 404, "not_found", "not_found_error")
    _assert_shape(authed.get("/api/no-such-endpoint"), 404, "not_found", "not_found_error")


def test_405_for_a_wrong_method(authed):
    _assert_shape(
        authed.patch("/api/keys", {}, format="json"), 405, "method_not_allowed", "invalid_request_error"
    )


def test_415_for_a_non_json_body(authed):
    response = authed.post("/api/keys", data="name=x", content_type="application/x-www-form-urlencoded")
    _assert_shape(response, 415, "unsupported_media_type", "invalid_request_error")
