"""Every credential door is rate limited per client address and per account (issue: 15/15
log-in attempts from one address were answered). Over a limit: 429 with Retry-After, and the
attempt is not processed (no log-in, no account, no mail, no new password)."""

import re

import pytest
import time_machine
from django.core import mail
from django.test import Client
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from redis.exceptions import ConnectionError as RedisConnectionError
from rest_framework.test import APIClient

from accounts.models import User
from accounts.tests.factories import DEFAULT_PASSWORD, StaffUserFactory, UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "a-very-decent-passphrase"


@pytest.fixture
def frozen():
    """The attempts of a test share one window (windows end at a key-dependent second)."""
    with time_machine.travel(timezone.now(), tick=False):
        yield


@pytest.fixture
def limits(settings, frozen):
    def set_(*, address: str = "100/m", account: str = "100/m"):
        settings.AUTH_RATE_LIMIT = address
        settings.AUTH_ACCOUNT_RATE_LIMIT = account

    return set_


def _page(address: str = "203.0.113.7") -> Client:
    return Client(REMOTE_ADDR=address)


def _api(address: str = "203.0.113.7") -> APIClient:
    return APIClient(REMOTE_ADDR=address)


def login_page(client, email, password=DEFAULT_PASSWORD):
    return client.post("/accounts/login/", {"username": email, "password": password})


def admin_login(client, email, password=DEFAULT_PASSWORD):
    return client.post("/admin/login/?next=/admin/", {"username": email, "password": password})


def token_api(client, email, password=DEFAULT_PASSWORD):
    return client.post("/api/auth/token", {"email": email, "password": password}, format="json")


def signup_page(client, email):
    return client.post("/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD})


def register_api(client, email):
    return client.post("/api/auth/register", {"email": email, "password": PASSWORD}, format="json")


def reset_request(client, email):
    return client.post("/accounts/password-reset/", {"email": email})


def _assert_refused_page(response):
    assert response.status_code == 429
    assert response["Content-Type"].startswith("text/html")
    assert b"Too many attempts" in response.content
    assert 1 <= int(response["Retry-After"]) <= 60


def _assert_refused_api(response):
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(response["Retry-After"]) <= 60


def test_login_page_refuses_the_attempt_past_the_address_limit(limits):
    limits(address="3/m")
    user = UserFactory()
    client = _page()
    for n in range(3):
        assert login_page(client, f"someone{n}@example.com", "wrong").status_code == 200  # form error

    refused = login_page(client, user.email)  # the right password, too late

    _assert_refused_page(refused)
    assert "_auth_user_id" not in client.session
    assert client.get("/dashboard/").status_code == 302
    assert login_page(_page("198.51.100.9"), user.email).status_code == 302  # another address


def test_admin_login_refuses_the_attempt_past_the_address_limit(limits):
    limits(address="3/m")
    staff = StaffUserFactory()
    client = _page()
    for _ in range(3):
        assert admin_login(client, staff.email, "wrong").status_code == 200

    refused = admin_login(client, staff.email)

    _assert_refused_page(refused)
    assert client.get("/admin/").status_code == 302  # still not logged in
    assert admin_login(_page("198.51.100.9"), staff.email).status_code == 302


def test_the_account_limit_holds_across_addresses_and_doors(limits):
    """A botnet: one guess per address, spread over the page, the admin and the token API."""
    limits(account="3/m")
    staff = StaffUserFactory()
    assert login_page(_page("203.0.113.1"), staff.email, "wrong-1").status_code == 200
    assert admin_login(_page("203.0.113.2"), staff.email, "wrong-2").status_code == 200
    assert token_api(_api("203.0.113.3"), staff.email.upper(), "wrong-3").status_code == 400

    _assert_refused_page(login_page(_page("203.0.113.4"), staff.email))  # right password, refused
    _assert_refused_page(admin_login(_page("203.0.113.5"), f"  {staff.email.upper()} "))
    _assert_refused_api(token_api(_api("203.0.113.6"), staff.email))
    # Other accounts are not held by it.
    other = UserFactory()
    assert login_page(_page("203.0.113.4"), other.email).status_code == 302


def test_token_api_counts_the_account_too(limits):
    limits(account="2/m")
    user = UserFactory()
    for n in range(2):
        assert token_api(_api(f"203.0.113.{n + 1}"), user.email, "wrong").status_code == 400

    _assert_refused_api(token_api(_api("203.0.113.9"), user.email))


def test_signup_page_and_api_share_the_address_limit(limits):
    limits(address="3/m")
    page, api = _page(), _api()
    for n in range(2):
        assert signup_page(page, f"new{n}@example.com").status_code == 302
        page.post("/accounts/logout/")
    assert register_api(api, "new2@example.com").status_code == 201

    refused_page = signup_page(page, "new3@example.com")
    refused_api = register_api(api, "new4@example.com")

    _assert_refused_page(refused_page)
    _assert_refused_api(refused_api)
    assert not User.objects.filter(email__in=["new3@example.com", "new4@example.com"]).exists()


def test_password_reset_request_is_limited_per_address_and_per_email(limits):
    limits(address="3/m", account="2/m")
    user = UserFactory()
    # Per email, from many addresses: no mail-bombing of one inbox.
    for n in range(2):
        assert reset_request(_page(f"203.0.113.{n + 1}"), user.email).status_code == 302
    _assert_refused_page(reset_request(_page("203.0.113.9"), user.email.upper()))
    assert len(mail.outbox) == 2

    # Per address, over many emails.
    client = _page("198.51.100.1")
    for n in range(3):
        assert reset_request(client, f"nobody{n}@example.com").status_code == 302
    _assert_refused_page(reset_request(client, "nobody9@example.com"))


def test_password_reset_link_is_limited_and_a_refused_post_sets_no_password(limits):
    user = UserFactory()
    client = _page()
    reset_request(client, user.email)
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", mail.outbox[0].body).group(1)
    limits(address="3/m")  # the counters start now: the link's GET, its redirect, one POST
    form_page = client.get(link, follow=True)
    assert b"Choose a new password" in form_page.content
    set_password_url = form_page.redirect_chain[-1][0]
    mismatch = client.post(set_password_url, {"new_password1": PASSWORD, "new_password2": "other-2"})
    assert mismatch.status_code == 200

    refused = client.post(set_password_url, {"new_password1": PASSWORD, "new_password2": PASSWORD})

    _assert_refused_page(refused)
    user.refresh_from_db()
    assert user.check_password(DEFAULT_PASSWORD)


def test_password_reset_link_guesses_are_limited_per_user_across_addresses(limits):
    limits(account="3/m")
    user = UserFactory()
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    for n in range(3):
        guess = _page(f"203.0.113.{n + 1}").get(f"/accounts/reset/{uid}/guess-{n}/")
        assert guess.status_code == 200 and b"no longer works" in guess.content

    _assert_refused_page(_page("203.0.113.9").get(f"/accounts/reset/{uid}/guess-9/"))


def test_admin_password_change_is_limited_per_user(limits):
    limits(account="2/m")
    staff = StaffUserFactory()
    client = _page()
    client.force_login(staff)
    form = {"old_password": "wrong", "new_password1": PASSWORD, "new_password2": PASSWORD}
    for _ in range(2):
        assert client.post("/admin/password_change/", form).status_code == 200  # wrong old password

    refused = client.post("/admin/password_change/", {**form, "old_password": DEFAULT_PASSWORD})

    _assert_refused_page(refused)
    staff.refresh_from_db()
    assert staff.check_password(DEFAULT_PASSWORD)
    assert _page().get("/admin/password_change/").status_code == 302  # still needs a staff log-in


def test_get_requests_to_the_forms_are_not_attempts(limits):
    limits(address="1/m")
    client = _page()
    for _ in range(3):
        assert client.get("/accounts/login/").status_code == 200
        assert client.get("/admin/login/").status_code == 200
        assert client.get("/accounts/signup/").status_code == 200
    assert login_page(client, UserFactory().email).status_code == 302


def test_the_limits_follow_the_client_behind_a_trusted_proxy(limits, settings):
    limits(address="2/m")
    settings.NUM_PROXIES = 1

    def codes(client_address: str) -> list[int]:
        client = Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=client_address)
        return [login_page(client, "x@example.com", "wrong").status_code for _ in range(3)]

    assert codes("203.0.113.7") == codes("198.51.100.9") == [200, 200, 429]


def test_ratelimit_enable_false_turns_them_off(limits, settings):
    limits(address="1/m", account="1/m")
    settings.RATELIMIT_ENABLE = False
    client = _page()
    assert [login_page(client, "x@example.com", "wrong").status_code for _ in range(3)] == [200, 200, 200]


def test_a_page_refuses_with_503_when_the_counters_cannot_be_read(monkeypatch):
    def cache_down(**kwargs):
        raise RedisConnectionError("connection refused")

    monkeypatch.setattr("accounts.views.credential_attempt_count", cache_down)
    user = UserFactory()
    client = _page()

    response = login_page(client, user.email)

    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert b"Temporarily unavailable" in response.content
    assert "_auth_user_id" not in client.session
