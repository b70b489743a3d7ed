import pytest
import time_machine
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.models import User
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def anon():
    return APIClient()


def test_register_returns_201_with_a_working_token(anon):
    response = anon.post(
        "/api/auth/register",
        {"email": "new@example.com", "password": "a-very-decent-passphrase"},
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    user = User.objects.get(email="new@example.com")
    assert body == {"id": user.pk, "email": "new@example.com", "token": Token.objects.get(user=user).key}
    assert "password" not in response.content.decode()

    anon.credentials(HTTP_AUTHORIZATION=f"Token {body['token']}")
    assert anon.get("/api/keys").status_code == 200


def test_register_duplicate_email_is_400_with_field_error(anon):
    UserFactory(email="dup@example.com")
    response = anon.post(
        "/api/auth/register",
        {"email": "dup@example.com", "password": "a-very-decent-passphrase"},
        format="json",
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and error["param"] == "email"
    assert error["errors"]["email"]


def test_register_weak_password_is_400_with_field_error(anon):
    response = anon.post("/api/auth/register", {"email": "a@example.com", "password": "1234"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "password"
    assert not User.objects.exists()


def test_register_missing_fields_is_400(anon):
    response = anon.post("/api/auth/register", {}, format="json")
    assert response.status_code == 400
    assert set(response.json()["error"]["errors"]) == {"email", "password"}


def test_token_returns_the_users_token(anon):
    user = UserFactory(email="me@example.com")
    response = anon.post(
        "/api/auth/token", {"email": "ME@example.com", "password": DEFAULT_PASSWORD}, format="json"
    )
    assert response.status_code == 200
    assert response.json() == {"token": Token.objects.get(user=user).key}
    again = anon.post(
        "/api/auth/token", {"email": "me@example.com", "password": DEFAULT_PASSWORD}, format="json"
    )
    assert again.json()["token"] == response.json()["token"]


def test_token_wrong_credentials_give_the_same_400_without_a_hint(anon):
    UserFactory(email="me@example.com")
    inactive = UserFactory(email="gone@example.com", is_active=False)
    wrong_password = anon.post(
        "/api/auth/token", {"email": "me@example.com", "password": "nope"}, format="json"
    )
    unknown_email = anon.post(
        "/api/auth/token", {"email": "who@example.com", "password": DEFAULT_PASSWORD}, format="json"
    )
    disabled = anon.post(
        "/api/auth/token", {"email": inactive.email, "password": DEFAULT_PASSWORD}, format="json"
    )
    assert wrong_password.status_code == unknown_email.status_code == disabled.status_code == 400
    assert wrong_password.json() == unknown_email.json() == disabled.json()
    assert wrong_password.json()["error"]["param"] is None


def test_token_endpoint_is_rate_limited_per_ip(anon, settings):
    settings.AUTH_RATE_LIMIT = "3/m"
    payload = {"email": "x@example.com", "password": "wrong"}
    # The clock stands still: the calls must share one window (it ends at an IP-dependent second).
    with time_machine.travel(timezone.now(), tick=False):
        codes = [anon.post("/api/auth/token", payload, format="json").status_code for _ in range(4)]
        response = anon.post("/api/auth/token", payload, format="json")
    assert codes == [400, 400, 400, 429]
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert response["Retry-After"]


def test_auth_rate_limit_counts_each_client_behind_a_trusted_proxy(settings):
    """Behind one reverse proxy every call has its REMOTE_ADDR: the limit follows the client."""
    settings.AUTH_RATE_LIMIT = "2/m"
    settings.NUM_PROXIES = 1
    payload = {"email": "x@example.com", "password": "wrong"}

    def codes(client_address: str) -> list[int]:
        client = APIClient(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=client_address)
        return [client.post("/api/auth/token", payload, format="json").status_code for _ in range(3)]

    with time_machine.travel(timezone.now(), tick=False):
        first, second = codes("203.0.113.7"), codes("198.51.100.9")
        # A client cannot escape by claiming another address left of the proxy's entry.
        spoofed = APIClient(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="192.0.2.1, 203.0.113.7")
        spoofed_code = spoofed.post("/api/auth/token", payload, format="json").status_code
    assert first == second == [400, 400, 429]
    assert spoofed_code == 429
