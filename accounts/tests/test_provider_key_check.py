"""A global provider key is checked with the provider before it is saved: admin form, its "Test
the key" button, the operator API and the profile page. The provider is the local fake
(``provider_fake`` in conftest); the key must never come back in any answer."""

import pytest

from accounts.models import ProviderCredential
from accounts.selectors import provider_key_get
from accounts.tests.factories import global_key_for

pytestmark = pytest.mark.django_db

SECRET = "sk-typed-by-operator-0123456789"
ADD = "/admin/accounts/providercredential/add/"
TEST = "/admin/accounts/providercredential/test-key/"


@pytest.fixture
def admin_client(client, django_user_model):
    admin = django_user_model.objects.create_superuser(email="root@example.com", password="root-pass-123456")
    client.force_login(admin)
    return client


def _add(admin_client, **extra):
    data = {"provider": "deepseek", "scope": "global", "workspace": "", "new_secret": SECRET, **extra}
    return admin_client.post(ADD, data, follow=True)


# --- admin: saving ------------------------------------------------------------------------------


def test_admin_saves_a_key_the_provider_accepts_and_shows_its_answer(admin_client, provider_fake):
    response = _add(admin_client)
    assert response.redirect_chain, response.content[:2000]
    assert provider_key_get(provider="deepseek").secret == SECRET
    assert b"Provider check (ok)" in response.content
    (asked,) = provider_fake.requests
    assert asked["path"] == "/deepseek/models"
    assert asked["headers"]["Authorization"] == f"Bearer {SECRET}"


def test_admin_refuses_a_key_the_provider_rejects_with_its_answer_and_never_the_key(
    admin_client, provider_fake
):
    provider_fake.mode = "401_echo"  # the provider quotes the key it was sent
    response = _add(admin_client, save_anyway="on")  # "save anyway" never saves a rejected key
    assert response.status_code == 200 and not response.redirect_chain
    assert b"deepseek rejected this key (401): Incorrect API key provided" in response.content
    assert SECRET.encode() not in response.content
    assert SECRET[:12].encode() not in response.content
    assert not ProviderCredential.objects.exists()


def test_admin_refuses_when_the_provider_is_down_unless_saved_anyway(admin_client, provider_fake):
    provider_fake.mode = "503"
    refused = _add(admin_client)
    assert not refused.redirect_chain
    assert b"The key could not be checked: Provider answered 503." in refused.content
    assert not ProviderCredential.objects.exists()

    saved = _add(admin_client, save_anyway="on")
    assert saved.redirect_chain
    assert b"Provider check (unavailable)" in saved.content
    assert provider_key_get(provider="deepseek").secret == SECRET


def test_admin_replacing_a_global_key_is_checked_too(admin_client, provider_fake):
    credential = global_key_for(provider="groq", secret="sk-old-working-key-0000")
    provider_fake.mode = "401_echo"
    response = admin_client.post(
        f"/admin/accounts/providercredential/{credential.pk}/change/", {"new_secret": SECRET}
    )
    assert response.status_code == 200
    assert b"groq rejected this key (401)" in response.content
    assert provider_key_get(provider="groq").secret == "sk-old-working-key-0000"


def test_admin_workspace_keys_are_not_sent_to_the_provider(admin_client, provider_fake, user):
    response = admin_client.post(
        ADD,
        {
            "provider": "openai",
            "scope": "workspace",
            "workspace": user.personal_workspace.pk,
            "new_secret": SECRET,
        },
    )
    assert response.status_code == 302
    assert provider_fake.requests == []


# --- admin: the "Test the key" button -----------------------------------------------------------


def test_test_button_answers_the_providers_verdict_without_saving(admin_client, provider_fake):
    page = admin_client.get(ADD)
    assert b'id="provider-key-test-button"' in page.content and TEST.encode() in page.content

    ok = admin_client.post(TEST, {"provider": "anthropic", "new_secret": SECRET}).json()
    assert ok["outcome"] == "ok" and ok["status"] == 200
    assert "1 models listed" in ok["message"]
    asked = provider_fake.requests[-1]
    assert asked["path"] == "/anthropic/models"
    assert asked["headers"]["x-api-key"] == SECRET and asked["headers"]["anthropic-version"]

    provider_fake.mode = "401_echo"
    rejected = admin_client.post(TEST, {"provider": "anthropic", "new_secret": SECRET})
    assert rejected.json()["outcome"] == "rejected" and rejected.json()["status"] == 401
    assert "Incorrect API key provided" in rejected.json()["message"]
    assert SECRET not in rejected.content.decode() and SECRET[:12] not in rejected.content.decode()
    assert not ProviderCredential.objects.exists()


def test_test_button_refuses_bad_input_and_non_staff(admin_client, client, user):
    assert admin_client.post(TEST, {"provider": "nope", "new_secret": SECRET}).status_code == 400
    assert admin_client.post(TEST, {"provider": "openai", "new_secret": ""}).status_code == 400
    assert admin_client.get(TEST).status_code == 405
    client.force_login(user)  # not staff: the admin's login page, never a check
    assert client.post(TEST, {"provider": "openai", "new_secret": SECRET}).status_code == 302


# --- operator API -------------------------------------------------------------------------------


def _put(staff_client, query="", **body):
    return staff_client.put(
        f"/api/admin/provider-keys/deepseek{query}", {"key": SECRET, **body}, format="json"
    )


def test_api_saves_an_accepted_key_with_the_check(staff_client):
    response = _put(staff_client)
    assert response.status_code == 200
    assert response.json()["check"] == {
        "outcome": "ok",
        "status": 200,
        "message": "The provider accepted the key (1 models listed).",
    }
    assert SECRET not in response.content.decode()
    assert provider_key_get(provider="deepseek").secret == SECRET


def test_api_refuses_a_rejected_key_with_the_providers_message(staff_client, provider_fake):
    provider_fake.mode = "401_echo"
    for response in (_put(staff_client), _put(staff_client, query="?skip_check=0")):
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "invalid_provider_key" and error["param"] == "key"
        assert error["provider_status"] == 401
        assert "deepseek rejected the key (401): Incorrect API key provided" in error["message"]
        assert SECRET not in response.content.decode() and SECRET[:12] not in response.content.decode()
    assert not ProviderCredential.objects.exists()


def test_api_provider_down_is_502_unless_the_check_is_skipped(staff_client, provider_fake):
    provider_fake.mode = "500"
    down = _put(staff_client)
    assert down.status_code == 502 and down.json()["error"]["code"] == "upstream_error"
    assert "skip_check=1" in down.json()["error"]["message"]
    assert not ProviderCredential.objects.exists()

    asked = len(provider_fake.requests)
    by_query = _put(staff_client, query="?skip_check=1")
    assert by_query.status_code == 200 and by_query.json()["check"]["outcome"] == "skipped"
    by_body = _put(staff_client, skip_check=True)
    assert by_body.status_code == 200
    assert len(provider_fake.requests) == asked  # skipping asks nothing
    assert provider_key_get(provider="deepseek").secret == SECRET


def test_api_unknown_provider_is_404_without_asking_anyone(staff_client, provider_fake):
    response = staff_client.put("/api/admin/provider-keys/nope", {"key": SECRET}, format="json")
    assert response.status_code == 404 and provider_fake.requests == []


def test_api_instantly_keys_are_saved_unchecked_with_the_reason(staff_client, provider_fake):
    response = staff_client.put("/api/admin/provider-keys/instantly", {"key": SECRET}, format="json")
    assert response.status_code == 200
    assert response.json()["check"]["outcome"] == "skipped"
    assert "Instantly" in response.json()["check"]["message"]
    assert provider_fake.requests == []


# --- profile page (staff) -----------------------------------------------------------------------


def test_profile_page_refuses_a_rejected_global_key(client, staff_user, provider_fake):
    client.force_login(staff_user)
    provider_fake.mode = "401_echo"
    response = client.post(
        "/accounts/profile/",
        {"provider": "deepseek", "scope": "global", "key": SECRET, "action": "set"},
        follow=True,
    )
    assert b"deepseek rejected the key (401)" in response.content
    assert SECRET.encode() not in response.content
    assert not ProviderCredential.objects.exists()
