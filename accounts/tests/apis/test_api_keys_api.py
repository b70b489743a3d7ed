import pytest
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.models import ApiKey
from accounts.tests.factories import api_key_for

pytestmark = pytest.mark.django_db


def test_create_returns_the_plaintext_once(user_client, user):
    response = user_client.post("/api/keys", {"name": "laptop"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "name", "key", "prefix", "created_at"}
    assert body["key"].startswith(body["prefix"]) and body["name"] == "laptop"

    listing = user_client.get("/api/keys")
    assert body["key"] not in listing.content.decode()
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_apikey")
        assert all(body["key"] not in str(value) for row in cursor.fetchall() for value in row)


def test_create_over_the_limit_is_400(user_client, user, settings):
    settings.API_KEYS_PER_USER_LIMIT = 1
    assert user_client.post("/api/keys", {"name": "a"}, format="json").status_code == 201
    response = user_client.post("/api/keys", {"name": "b"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["limit"] == 1


@pytest.mark.parametrize("payload", [{}, {"name": ""}, {"name": "x" * 101}, {"name": None}])
def test_create_with_a_bad_name_is_400(user_client, payload):
    response = user_client.post("/api/keys", payload, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "name"


def test_list_shows_only_the_workspaces_keys_without_plaintext_in_constant_queries(
    user_client, user, other_user, django_assert_max_num_queries
):
    for i in range(5):
        api_key_for(user, name=f"k{i}")
    api_key_for(other_user, name="not mine")
    with django_assert_max_num_queries(2):  # the caller's membership, then the keys with their creator
        response = user_client.get("/api/keys")
    assert response.status_code == 200
    keys = response.json()
    assert [k["name"] for k in keys] == [f"k{i}" for i in reversed(range(5))]
    assert set(keys[0]) == {
        "id",
        "name",
        "prefix",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
        "expires_at",
        "limits",
        "allowed_models",
    }
    assert {k["created_by"] for k in keys} == {user.email}


def test_delete_revokes_and_the_key_is_401_on_its_next_use(
    bearer_client, user, django_capture_on_commit_callbacks
):
    api_key, plaintext = api_key_for(user, name="to revoke")
    victim = APIClient()
    victim.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    assert victim.get("/api/keys").status_code == 200  # used once: its identity is now cached

    with django_capture_on_commit_callbacks(execute=True):
        assert bearer_client.delete(f"/api/keys/{api_key.pk}").status_code == 204

    response = victim.get("/api/keys")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None


def test_garbage_bearer_key_is_401_without_a_query(django_assert_num_queries):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer sk_agentai_not-a-real-key")
    with django_assert_num_queries(0):
        response = client.get("/api/keys")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_another_workspaces_key_is_404_for_delete_and_rotate(user_client, other_user):
    theirs, _ = api_key_for(other_user)
    assert user_client.delete(f"/api/keys/{theirs.pk}").json()["error"]["code"] == "not_found"
    assert user_client.delete(f"/api/keys/{theirs.pk}").status_code == 404
    assert user_client.post(f"/api/keys/{theirs.pk}/rotate", {}, format="json").status_code == 404
    assert user_client.delete("/api/keys/999999").status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None and theirs.expires_at is None


def test_rotate_with_grace_returns_a_new_key_and_keeps_the_old_one_working(user_client, user):
    old, old_plaintext = api_key_for(user, name="prod")
    response = user_client.post(f"/api/keys/{old.pk}/rotate", {"grace_seconds": 3600}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "prod" and body["id"] != old.pk
    assert body["previous"]["id"] == old.pk and body["previous"]["expires_at"] is not None

    for plaintext in (old_plaintext, body["key"]):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
        assert client.get("/api/keys").status_code == 200


def test_rotate_without_body_revokes_the_old_key_now(user_client, user, django_capture_on_commit_callbacks):
    old, old_plaintext = api_key_for(user)
    with django_capture_on_commit_callbacks(execute=True):
        response = user_client.post(f"/api/keys/{old.pk}/rotate")
    assert response.status_code == 201
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {old_plaintext}")
    assert client.get("/api/keys").status_code == 401


@pytest.mark.parametrize("grace", [-5, 172801, "soon"])
def test_rotate_with_invalid_grace_is_400(user_client, user, grace):
    old, _ = api_key_for(user)
    response = user_client.post(f"/api/keys/{old.pk}/rotate", {"grace_seconds": grace}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "grace_seconds"
    assert ApiKey.objects.filter(workspace=user.personal_workspace).count() == 1


def test_token_and_session_auth_are_accepted(user, client):
    token = Token.objects.create(user=user)
    token_client = APIClient()
    token_client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert token_client.get("/api/keys").status_code == 200

    client.force_login(user)
    assert client.get("/api/keys").status_code == 200


def test_session_writes_need_csrf(user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post("/api/keys", {"name": "x"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
