"""The profile's time zone: a select with "Browser default", saved with Post/Redirect/Get; an
unknown zone is refused with a message on the field and nothing saved."""

import pytest
from django.core.exceptions import ValidationError

from accounts.models import User
from accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def user(client):
    user = UserFactory(email="tz@example.com")
    client.force_login(user)
    return user


def test_the_profile_offers_the_zones_and_the_browser_default(client, user):
    page = client.get("/accounts/profile/").content.decode()

    assert '<option value="" selected>Browser default</option>' in page
    assert '<option value="Africa/Algiers">Africa/Algiers</option>' in page
    assert '<option value="America/New_York">America/New York</option>' in page
    assert 'value="localtime"' not in page


def test_saving_a_zone_redirects_then_pages_use_it(client, user):
    response = client.post("/accounts/profile/", {"form": "time_zone", "time_zone": "Africa/Algiers"})

    assert response.status_code == 302 and response["Location"] == "/accounts/profile/"  # Post/Redirect/Get
    assert User.objects.get(pk=user.pk).time_zone == "Africa/Algiers"
    page = client.get("/accounts/profile/").content.decode()
    assert "Times are now shown in Africa/Algiers." in page
    assert '<option value="Africa/Algiers" selected>' in page
    assert "<strong data-current-time-zone>Africa/Algiers</strong>" in page


def test_browser_default_clears_the_zone(client, user):
    user.time_zone = "Europe/Paris"
    user.save(update_fields=["time_zone"])
    client.cookies["tz"] = "Asia/Tokyo"

    response = client.post("/accounts/profile/", {"form": "time_zone", "time_zone": ""})

    assert response.status_code == 302
    assert User.objects.get(pk=user.pk).time_zone == ""
    page = client.get("/accounts/profile/").content.decode()
    assert "<strong data-current-time-zone>Asia/Tokyo</strong> (your browser's zone" in page


@pytest.mark.parametrize("value", ["Europe/Pariss", "localtime", "x" * 300, "<script>"])
def test_an_unknown_zone_is_a_form_error_and_nothing_is_saved(client, user, value):
    user.time_zone = "Europe/Paris"
    user.save(update_fields=["time_zone"])

    response = client.post("/accounts/profile/", {"form": "time_zone", "time_zone": value})

    assert response.status_code == 400
    page = response.content.decode()
    assert 'id="time-zone-errors"' in page and "is not a known time zone" in page
    assert "Choose one from the list, such as Europe/Paris." in page
    assert "<script>" not in page.split('id="time-zone-errors"')[1].split("</ul>")[0]  # escaped
    assert User.objects.get(pk=user.pk).time_zone == "Europe/Paris"


def test_the_model_refuses_an_unknown_zone_too(user):
    user.time_zone = "Moon/Base"
    with pytest.raises(ValidationError, match="not a known time zone"):
        user.full_clean()


def test_the_provider_key_form_on_the_same_page_is_unchanged(client, user):
    response = client.post("/accounts/profile/", {"provider": "nope", "scope": "workspace", "action": "set"})

    assert response.status_code == 302
    assert "Choose a known provider." in client.get("/accounts/profile/").content.decode()
