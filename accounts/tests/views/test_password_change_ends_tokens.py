"""A new password ends the user's DRF tokens, as it ends their sessions (issue: after a reset,
``Token <old>`` still answered 200). Driven through the real pages and the real token API."""

import io
import re

import pytest
from django.core import mail
from django.core.management import call_command
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.tests.factories import DEFAULT_PASSWORD, StaffUserFactory, api_key_for

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "brand-new-passphrase-77"


def _token_for(email: str, password: str) -> str:
    response = APIClient().post("/api/auth/token", {"email": email, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["token"]


def _keys_status(token: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client.get("/api/keys").status_code


def test_a_password_reset_ends_the_token_and_the_sessions(user):
    old_token = _token_for(user.email, DEFAULT_PASSWORD)
    assert _keys_status(old_token) == 200
    _, api_key = api_key_for(user)
    other_session = Client()
    other_session.force_login(user)
    assert other_session.get("/dashboard/").status_code == 200

    client = Client()
    assert client.post("/accounts/password-reset/", {"email": user.email}).status_code == 302
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", mail.outbox[0].body).group(1)
    form_page = client.get(link, follow=True)
    done = client.post(
        form_page.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    assert done.status_code == 302 and done["Location"] == "/accounts/reset/done/"

    assert _keys_status(old_token) == 401
    assert not Token.objects.filter(user=user).exists()
    assert other_session.get("/dashboard/").status_code == 302  # sessions ended too (Django)
    new_token = _token_for(user.email, NEW_PASSWORD)
    assert new_token != old_token and _keys_status(new_token) == 200
    # Customer API keys are machine credentials with their own revoke/rotate: they keep working.
    bearer = APIClient()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert bearer.get("/api/keys").status_code == 200


def test_a_password_change_in_the_admin_ends_the_token():
    staff = StaffUserFactory(is_superuser=True)
    staff_token = _token_for(staff.email, DEFAULT_PASSWORD)
    customer = StaffUserFactory(is_staff=False)
    customer_token = _token_for(customer.email, DEFAULT_PASSWORD)
    admin = Client()
    assert (
        admin.post(
            "/admin/login/", {"username": staff.email, "password": DEFAULT_PASSWORD, "next": "/admin/"}
        ).status_code
        == 302
    )

    # An operator sets a customer's password.
    response = admin.post(
        f"/admin/accounts/user/{customer.pk}/password/",
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"},
    )
    assert response.status_code == 302, response.content[:1000]
    assert _keys_status(customer_token) == 401
    assert _keys_status(staff_token) == 200

    # The operator changes their own password.
    response = admin.post(
        "/admin/password_change/",
        {"old_password": DEFAULT_PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 302, response.content[:1000]
    assert _keys_status(staff_token) == 401


def test_saves_that_do_not_change_the_password_keep_the_token(user, settings):
    token = _token_for(user.email, DEFAULT_PASSWORD)
    user.name = "Renamed"
    user.save()
    assert _keys_status(token) == 200

    # A log-in that upgrades the stored hash (a new default hasher) is not a password change.
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]
    assert _token_for(user.email, DEFAULT_PASSWORD) == token
    user.refresh_from_db()
    assert user.password.startswith("pbkdf2_sha256$")
    assert _keys_status(token) == 200


def test_changepassword_command_ends_the_token(user, monkeypatch):
    token = _token_for(user.email, DEFAULT_PASSWORD)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": NEW_PASSWORD)

    call_command("changepassword", user.email, stdout=io.StringIO())

    assert _keys_status(token) == 401
