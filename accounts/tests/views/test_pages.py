import re

import pytest
from django.core import mail

from accounts.models import ApiKey, KeyReveal, ProviderCredential, User
from accounts.selectors import api_key_identity_get
from accounts.services import api_key_reveal_link_create
from accounts.tests.factories import DEFAULT_PASSWORD, api_key_for, global_key_for, personal_key_for

pytestmark = pytest.mark.django_db


def test_dashboard_requires_login(client):
    response = client.get("/dashboard/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/dashboard/")


def test_signup_then_overview_then_create_a_key_on_the_keys_page(client):
    response = client.post(
        "/accounts/signup/",
        {
            "email": "Newbie@Example.com",
            "password1": "a-very-decent-passphrase",
            "password2": "a-very-decent-passphrase",
        },
    )
    assert response.status_code == 302 and response["Location"] == "/dashboard/"
    user = User.objects.get(email="newbie@example.com")

    overview = client.get("/dashboard/")
    assert overview.status_code == 200
    assert b'id="get-started"' in overview.content and b'href="/keys/"' in overview.content
    assert b"No keys yet" in client.get("/keys/").content

    created = client.post("/dashboard/keys/", {"name": "my first key", "next": "/keys/"})
    assert created.status_code == 302 and created["Location"] == "/keys/"  # Post/Redirect/Get
    assert b"sk_agentai_" not in created.content and "sk_agentai_" not in created["Location"]
    shown = client.get("/keys/")
    plaintext = re.search(rb'id="new-key-value">(sk_agentai_[0-9A-Za-z]+)<', shown.content).group(1).decode()
    identity = api_key_identity_get(raw_key=plaintext)
    assert (identity.workspace_id, identity.user_id) == (user.personal_workspace.pk, user.pk)
    assert (
        b'<dialog id="new-key-dialog"' in shown.content
        and b'data-copy-target="new-key-value"' in shown.content
    )

    again = client.get("/keys/")  # a reload: shown once, and no second key
    assert plaintext.encode() not in again.content
    assert ApiKey.objects.get(created_by=user).prefix.encode() in again.content


def test_signup_shows_field_errors(client, user):
    response = client.post(
        "/accounts/signup/", {"email": user.email, "password1": "short", "password2": "short"}
    )
    assert response.status_code == 200
    assert b"already exists" in response.content
    weak = client.post(
        "/accounts/signup/", {"email": "x@example.com", "password1": "123", "password2": "123"}
    )
    assert b"too short" in weak.content
    mismatch = client.post(
        "/accounts/signup/",
        {
            "email": "y@example.com",
            "password1": "a-very-decent-passphrase",
            "password2": "another-one-entirely",
        },
    )
    assert b"do not match" in mismatch.content
    assert User.objects.count() == 1


def test_login_with_email_and_logout_by_post(client, user):
    response = client.post("/accounts/login/", {"username": user.email, "password": DEFAULT_PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/dashboard/"
    assert client.get("/dashboard/").status_code == 200
    assert client.get("/accounts/logout/").status_code == 405
    client.post("/accounts/logout/")
    assert client.get("/dashboard/").status_code == 302


def test_password_reset_sends_a_working_link(client, user):
    response = client.post("/accounts/password-reset/", {"email": user.email})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    assert user.email in mail.outbox[0].to
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", mail.outbox[0].body).group(1)
    form_page = client.get(link, follow=True)
    assert form_page.status_code == 200 and b"Choose a new password" in form_page.content
    done = client.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": "brand-new-passphrase-77", "new_password2": "brand-new-passphrase-77"},
    )
    assert done.status_code == 302
    user.refresh_from_db()
    assert user.check_password("brand-new-passphrase-77")


def test_revoke_and_rotate_from_the_keys_page(client, user, django_capture_on_commit_callbacks):
    client.force_login(user)
    to_revoke, revoked_plaintext = api_key_for(user, name="old")
    to_rotate, _ = api_key_for(user, name="rotating")

    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(f"/dashboard/keys/{to_revoke.pk}/revoke/").status_code == 302
    assert api_key_identity_get(raw_key=revoked_plaintext) is None

    rotated = client.post(f"/dashboard/keys/{to_rotate.pk}/rotate/", {"grace_seconds": "3600"})
    assert rotated.status_code == 302 and rotated["Location"] == "/keys/"
    page = client.get("/keys/")
    assert b"Your replacement key" in page.content and b"keeps working until" in page.content
    assert b"Your replacement key" not in client.get("/keys/").content
    assert (
        ApiKey.objects.filter(workspace=user.personal_workspace).count() == 3
    )  # the reload rotated nothing more
    to_rotate.refresh_from_db()
    assert to_rotate.expires_at is not None


def test_key_forms_go_back_only_to_a_page_of_this_site(client, user):
    client.force_login(user)
    inside = client.post("/dashboard/keys/", {"name": "k", "next": "/docs/"})
    assert inside["Location"] == "/docs/"
    outside = client.post("/dashboard/keys/", {"name": "k", "next": "https://evil.example/"})
    assert outside["Location"] == "/keys/"


def test_dashboard_actions_on_another_workspaces_key_are_404(client, user, other_user):
    theirs, _ = api_key_for(other_user)
    client.force_login(user)
    assert client.post(f"/dashboard/keys/{theirs.pk}/revoke/").status_code == 404
    assert client.post(f"/dashboard/keys/{theirs.pk}/rotate/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


def test_reveal_page_shows_the_key_once_and_only_to_its_owner(client, user, other_user):
    api_key, plaintext = api_key_for(user)
    url = api_key_reveal_link_create(api_key=api_key, plaintext=plaintext)
    path = url.split("://", 1)[1].split("/", 1)[1]
    path = "/" + path

    assert client.get(path).status_code == 302  # login first
    client.force_login(other_user)
    assert client.get(path).status_code == 404
    assert client.post(path).status_code == 404

    client.force_login(user)
    confirm = client.get(path)
    assert confirm.status_code == 200 and plaintext.encode() not in confirm.content
    shown = client.post(path)
    assert shown.status_code == 302 and shown["Location"] == path  # Post/Redirect/Get
    assert plaintext.encode() in client.get(path).content
    assert KeyReveal.objects.get().secret is None
    assert plaintext.encode() not in client.get(path).content
    assert plaintext.encode() not in client.post(path, follow=True).content


def test_profile_sets_the_workspaces_key_and_shows_it_masked(client, user):
    client.force_login(user)
    secret = "sk-deepseek-personal-0099"
    response = client.post(
        "/accounts/profile/", {"provider": "deepseek", "scope": "workspace", "action": "set", "key": secret}
    )
    assert response.status_code == 302
    page = client.get("/accounts/profile/")
    assert b"sk-de\xe2\x80\xa699" in page.content
    assert secret.encode() not in page.content
    assert b"Global API keys (admin)" not in page.content

    client.post("/accounts/profile/", {"provider": "deepseek", "scope": "workspace", "action": "delete"})
    assert not ProviderCredential.objects.exists()


def test_profile_refuses_an_empty_key(client, user):
    client.force_login(user)
    client.post(
        "/accounts/profile/", {"provider": "deepseek", "scope": "workspace", "action": "set", "key": ""}
    )
    assert not ProviderCredential.objects.exists()


def test_profile_global_section_is_staff_only(client, user, staff_user):
    client.force_login(user)
    response = client.post(
        "/accounts/profile/",
        {"provider": "openai", "scope": "global", "action": "set", "key": "sk-abcdefghijk"},
    )
    assert response.status_code == 403
    assert not ProviderCredential.objects.exists()

    client.force_login(staff_user)
    page = client.get("/accounts/profile/")
    assert b"Global API keys (admin)" in page.content
    client.post(
        "/accounts/profile/",
        {"provider": "openai", "scope": "global", "action": "set", "key": "sk-abcdefghijk"},
    )
    assert ProviderCredential.objects.get(scope="global").masked == "sk-ab…jk"


def test_profile_masks_only_and_never_shows_other_workspaces_keys(client, user, other_user, staff_user):
    personal_key_for(other_user, secret="sk-someone-elses-key-77")
    global_key_for(provider="openai", secret="sk-operator-secret-999")
    client.force_login(user)
    page = client.get("/accounts/profile/").content
    assert b"sk-so" not in page and b"sk-op" not in page
    client.force_login(staff_user)
    staff_page = client.get("/accounts/profile/").content
    assert b"sk-op\xe2\x80\xa699" in staff_page and b"sk-operator-secret-999" not in staff_page


@pytest.mark.parametrize(
    "url",
    ["/accounts/login/", "/accounts/signup/", "/accounts/password-reset/", "/accounts/password-reset/done/"],
)
def test_public_account_pages_render_with_csrf(client, url):
    response = client.get(url)
    assert response.status_code == 200
    if b"<form" in response.content:
        assert b"csrfmiddlewaretoken" in response.content


def test_logged_in_user_is_sent_from_login_and_signup_to_the_dashboard(client, user):
    client.force_login(user)
    assert client.get("/accounts/login/")["Location"] == "/dashboard/"
    assert client.get("/accounts/signup/")["Location"] == "/dashboard/"
