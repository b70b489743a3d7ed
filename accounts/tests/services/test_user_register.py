import pytest
from rest_framework.authtoken.models import Token

from accounts.models import User
from accounts.services import user_register
from accounts.tests.factories import UserFactory
from core.exceptions import ApiError

pytestmark = pytest.mark.django_db


def test_register_creates_user_with_lowercased_email_and_token():
    user = user_register(email="  New.Person@Example.COM ", password="a-very-decent-passphrase")
    assert user.email == "new.person@example.com"
    assert user.check_password("a-very-decent-passphrase")
    assert Token.objects.filter(user=user).exists()


def test_duplicate_email_is_400_on_the_email_field_case_insensitively():
    UserFactory(email="taken@example.com")
    with pytest.raises(ApiError) as exc:
        user_register(email="TAKEN@example.com", password="a-very-decent-passphrase")
    assert exc.value.status_code == 400
    assert exc.value.param == "email"
    assert "email" in exc.value.extra["errors"]
    assert User.objects.count() == 1


@pytest.mark.parametrize("password", ["short", "password123", "12345678901", "someone@example.com"])
def test_weak_password_is_400_on_the_password_field(password):
    with pytest.raises(ApiError) as exc:
        user_register(email="someone@example.com", password=password)
    assert exc.value.param == "password"
    assert exc.value.extra["errors"]["password"]
    assert not User.objects.exists()


def test_invalid_email_is_400():
    with pytest.raises(ApiError) as exc:
        user_register(email="not-an-email", password="a-very-decent-passphrase")
    assert exc.value.param == "email"
