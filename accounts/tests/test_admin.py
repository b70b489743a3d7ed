import pytest

from accounts.models import ApiKey, AuditEvent, ProviderCredential
from accounts.selectors import provider_key_get
from accounts.tests.factories import api_key_for, global_key_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, django_user_model):
    admin = django_user_model.objects.create_superuser(email="root@example.com", password="root-pass-123456")
    client.force_login(admin)
    return client


def test_provider_credential_add_saves_through_the_service(admin_client):
    secret = "sk-admin-entered-secret-55"
    response = admin_client.post(
        "/admin/accounts/providercredential/add/",
        {"provider": "groq", "scope": "global", "workspace": "", "new_secret": secret},
    )
    assert response.status_code == 302, response.content[:2000]
    credential = ProviderCredential.objects.get()
    assert credential.masked == "sk-ad…55"
    assert provider_key_get(provider="groq").secret == secret


def test_provider_credential_admin_never_renders_the_secret(admin_client):
    credential = global_key_for(provider="openai", secret="sk-never-shown-in-admin-1")
    change = admin_client.get(f"/admin/accounts/providercredential/{credential.pk}/change/")
    listing = admin_client.get("/admin/accounts/providercredential/")
    for page in (change, listing):
        assert page.status_code == 200
        assert b"sk-never-shown-in-admin-1" not in page.content
    assert b"sk-ne" in listing.content


def test_provider_credential_admin_refuses_an_empty_secret(admin_client):
    response = admin_client.post(
        "/admin/accounts/providercredential/add/",
        {"provider": "groq", "scope": "global", "workspace": "", "new_secret": ""},
    )
    assert response.status_code == 200
    assert not ProviderCredential.objects.exists()


def test_api_key_admin_revokes_through_the_service(admin_client, user):
    api_key, _ = api_key_for(user)
    response = admin_client.post(
        "/admin/accounts/apikey/",
        {"action": "revoke_keys", "_selected_action": [api_key.pk]},
    )
    assert response.status_code == 302
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    event = AuditEvent.objects.get(action="api_key.revoked")
    assert (event.actor.email, event.workspace) == ("root@example.com", user.personal_workspace)
    assert admin_client.get("/admin/accounts/apikey/").status_code == 200
    detail = admin_client.get(f"/admin/accounts/apikey/{api_key.pk}/change/")
    assert detail.status_code == 200
    assert ApiKey.objects.count() == 1


def test_provider_credential_admin_reports_scope_mistakes_as_form_errors(admin_client):
    global_key_for(provider="groq")
    duplicate = admin_client.post(
        "/admin/accounts/providercredential/add/",
        {"provider": "groq", "scope": "global", "workspace": "", "new_secret": "sk-second-global-key"},
    )
    ownerless = admin_client.post(
        "/admin/accounts/providercredential/add/",
        {"provider": "openai", "scope": "workspace", "workspace": "", "new_secret": "sk-workspace-no-owner"},
    )
    assert duplicate.status_code == 200 and ownerless.status_code == 200
    assert b"belongs to a workspace" in ownerless.content
    assert ProviderCredential.objects.count() == 1
