import pytest
from rest_framework.test import APIClient

from accounts.models import ProviderCredential
from accounts.providers import PROVIDERS
from accounts.tests.factories import global_key_for

pytestmark = pytest.mark.django_db

SECRET = "sk-deepseek-0123456789abcdef"


def test_list_shows_every_provider_masked(user_client, monkeypatch, django_assert_max_num_queries):
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    user_client.put("/api/provider-keys/deepseek", {"key": SECRET}, format="json")
    with django_assert_max_num_queries(2):  # the caller's membership, then every provider's row
        response = user_client.get("/api/provider-keys")
    assert response.status_code == 200
    rows = {row["provider"]: row for row in response.json()}
    assert set(rows) == set(PROVIDERS)
    assert rows["deepseek"] == {
        "provider": "deepseek",
        "workspace": {"configured": True, "masked": "sk-de…ef"},
        "source": "workspace",
    }
    assert rows["openai"]["workspace"] == {"configured": False, "masked": None}
    assert SECRET not in response.content.decode()


def test_put_sets_and_delete_removes_the_workspaces_key(user_client, user):
    response = user_client.put("/api/provider-keys/deepseek", {"key": SECRET}, format="json")
    assert response.status_code == 200
    assert response.json()["masked"] == "sk-de…ef" and response.json()["scope"] == "workspace"
    assert SECRET not in response.content.decode()
    workspace = user.personal_workspace
    assert ProviderCredential.objects.filter(workspace=workspace, provider="deepseek").exists()

    assert user_client.delete("/api/provider-keys/deepseek").status_code == 204
    assert not ProviderCredential.objects.filter(workspace=workspace).exists()


@pytest.mark.parametrize("payload", [{"key": ""}, {"key": "   "}, {"key": "k" * 513}, {}])
def test_put_refuses_empty_or_overlong_keys(user_client, payload):
    response = user_client.put("/api/provider-keys/deepseek", payload, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "key"
    assert not ProviderCredential.objects.exists()


def test_unknown_provider_is_404(user_client):
    for method in (user_client.put, user_client.delete):
        response = method("/api/provider-keys/nope", {"key": SECRET}, format="json")
        assert response.status_code == 404
        assert response.json()["error"]["param"] == "provider"


def test_global_keys_are_staff_only(user_client, staff_client):
    forbidden = user_client.put("/api/admin/provider-keys/openai", {"key": SECRET}, format="json")
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "forbidden"
    assert user_client.delete("/api/admin/provider-keys/openai").status_code == 403
    assert not ProviderCredential.objects.exists()

    ok = staff_client.put("/api/admin/provider-keys/openai", {"key": SECRET}, format="json")
    assert ok.status_code == 200 and ok.json()["scope"] == "global"
    assert ProviderCredential.objects.get(scope="global").workspace is None
    assert staff_client.delete("/api/admin/provider-keys/openai").status_code == 204
    assert not ProviderCredential.objects.exists()


def test_global_keys_need_authentication(db):
    response = APIClient().put("/api/admin/provider-keys/openai", {"key": SECRET}, format="json")
    assert response.status_code == 401


def test_a_global_key_shows_as_source_but_never_its_mask_to_customers(user_client):
    global_key_for(provider="openai", secret="sk-operator-secret-999")
    rows = {row["provider"]: row for row in user_client.get("/api/provider-keys").json()}
    assert rows["openai"]["source"] == "global"
    assert rows["openai"]["workspace"]["configured"] is False
    assert "sk-op" not in user_client.get("/api/provider-keys").content.decode()
