"""Confirming the address: the sign-up mail's link, its failures, and invitations as proof."""

import re
from urllib.parse import urlsplit

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from accounts.models import Role, User
from accounts.services.verification import email_verification_token_make, user_email_verified
from accounts.services.workspaces import invitation_accept, invitation_create
from accounts.tests.factories import UserFactory, team_workspace

pytestmark = pytest.mark.django_db


def _signup(client, email="new@example.com", **extra):
    return client.post(
        "/accounts/signup/",
        {
            "email": email,
            "password1": "a-very-decent-passphrase",
            "password2": "a-very-decent-passphrase",
            **extra,
        },
    )


def _link_in(message) -> str:
    return re.search(r"https?://\S+/accounts/verify-email/\S+/", message.body).group(0)


def test_signup_mails_a_link_that_confirms_the_address(client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _signup(client)
    user = User.objects.get(email="new@example.com")
    assert user.email_verified_at is None and not user_email_verified(user)
    (message,) = [m for m in mail.outbox if "Confirm" in m.subject]
    assert message.to == ["new@example.com"]

    response = client.get(urlsplit(_link_in(message)).path)
    assert response.status_code == 302 and response["Location"] == "/dashboard/"
    user.refresh_from_db()
    assert user.email_verified_at is not None and user_email_verified(user)


def test_a_tampered_link_confirms_nothing(client):
    user = UserFactory(email_verified_at=None)
    token = email_verification_token_make(user=user)
    client.get(f"/accounts/verify-email/{token[:-2]}xx/")
    user.refresh_from_db()
    assert user.email_verified_at is None


def test_a_link_stops_working_after_seven_days(client):
    user = UserFactory(email_verified_at=None)
    token = email_verification_token_make(user=user)
    with time_machine.travel(timezone.now() + timezone.timedelta(days=8)):
        client.get(f"/accounts/verify-email/{token}/")
    user.refresh_from_db()
    assert user.email_verified_at is None


def test_a_link_for_an_address_since_changed_confirms_nothing(client):
    user = UserFactory(email_verified_at=None, email="old@example.com")
    token = email_verification_token_make(user=user)
    User.objects.filter(pk=user.pk).update(email="new@example.com")
    client.get(f"/accounts/verify-email/{token}/")
    user.refresh_from_db()
    assert user.email_verified_at is None


def test_optional_verification_only_reminds(settings):
    settings.EMAIL_VERIFICATION = "optional"
    assert user_email_verified(UserFactory(email_verified_at=None))


def test_resend_mails_a_new_link(client):
    user = UserFactory(email_verified_at=None)
    client.force_login(user)
    response = client.post("/accounts/verify-email/resend/")
    assert response.status_code == 302
    assert [m.to for m in mail.outbox if "Confirm" in m.subject] == [[user.email]]


def test_accepting_an_invitation_confirms_the_address_it_was_mailed_to():
    owner = UserFactory()
    workspace = team_workspace(owner=owner)
    invitee = UserFactory(email="dev@example.com", email_verified_at=None)
    _, accept_url = invitation_create(
        workspace=workspace, actor=owner, email="DEV@example.com", role=Role.DEVELOPER
    )
    invitation_accept(user=invitee, token=accept_url.rstrip("/").rsplit("/", 1)[1])
    invitee.refresh_from_db()
    assert invitee.email_verified_at is not None


def test_signup_from_an_invitation_link_returns_to_it(client):
    response = _signup(client, email="invited@example.com", next="/invitations/accept/abc/")
    assert response.status_code == 302 and response["Location"] == "/invitations/accept/abc/"


def test_signup_ignores_a_next_on_another_site(client):
    response = _signup(client, email="elsewhere@example.com", next="https://evil.example/")
    assert response["Location"] == "/dashboard/"


def test_every_page_reminds_an_unconfirmed_account_until_it_confirms(client, settings):
    settings.EMAIL_VERIFICATION = "mandatory"
    user = UserFactory(email_verified_at=None)
    client.force_login(user)
    assert "Your API keys work once it is confirmed" in client.get("/dashboard/").content.decode()

    User.objects.filter(pk=user.pk).update(email_verified_at=timezone.now())
    assert "Confirm your email address" not in client.get("/dashboard/").content.decode()


def test_optional_verification_reminds_without_the_warning(client, settings):
    settings.EMAIL_VERIFICATION = "optional"
    client.force_login(UserFactory(email_verified_at=None))
    page = client.get("/dashboard/").content.decode()
    assert "Confirm your email address" in page and "Your API keys work once" not in page
