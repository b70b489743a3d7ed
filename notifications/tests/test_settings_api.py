"""GET/PATCH /api/notifications/settings: the defaults until changed, strict validation in the
API's error shape, billing readers read and billing managers change (``accounts.roles``), a
change is audited and seen at once (the cached copy is dropped)."""

from __future__ import annotations

import pytest

from accounts.models import AuditEvent
from accounts.roles import role_can, roles_allowed
from accounts.tests.factories import UserFactory, member_add
from notifications.models import NotificationSettings
from notifications.selectors import notification_settings_get

from .conftest import client_for

pytestmark = pytest.mark.django_db

URL = "/api/notifications/settings"


@pytest.fixture
def owner_client(team):
    workspace, owner, _ = team
    return client_for(owner, workspace)


def test_defaults_until_changed_and_no_row_is_written_by_reading(owner_client, team, settings):
    settings.CREDITS_LOW_THRESHOLD = 20
    response = owner_client.get(URL)

    assert response.status_code == 200, response.content
    assert response.json() == {
        "quota_thresholds": [80, 100],
        "limit_thresholds": [80, 100],
        "credits_low_balance": 20,
        "credits_low_balance_is_default": True,
        "email_enabled": True,
    }
    assert not NotificationSettings.objects.exists()


def test_a_change_is_stored_sorted_audited_and_read_back_at_once(owner_client, team):
    workspace, owner, _ = team
    assert owner_client.get(URL).json()["quota_thresholds"] == [80, 100]  # now cached

    response = owner_client.patch(
        URL,
        {"quota_thresholds": [90, 50, 75], "credits_low_balance": 0, "email_enabled": False},
        format="json",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["quota_thresholds"] == [50, 75, 90]
    assert body["limit_thresholds"] == [80, 100]  # not given: unchanged
    assert body["credits_low_balance"] == 0 and body["credits_low_balance_is_default"] is False
    assert body["email_enabled"] is False
    assert owner_client.get(URL).json() == body
    assert notification_settings_get(workspace_id=workspace.pk).quota == (50, 75, 90)
    event = AuditEvent.objects.get(workspace=workspace, action="notifications.settings_updated")
    assert event.actor == owner and event.details["quota_thresholds"] == [50, 75, 90]

    # null goes back to the operator's default
    again = owner_client.patch(URL, {"credits_low_balance": None}, format="json").json()
    assert again["credits_low_balance_is_default"] is True


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"quota_thresholds": [0, 80]}, "quota_thresholds"),
        ({"quota_thresholds": [80, 101]}, "quota_thresholds"),
        ({"quota_thresholds": [10, 20, 30, 40, 50, 60]}, "quota_thresholds"),
        ({"quota_thresholds": [80, 80]}, "quota_thresholds"),
        ({"quota_thresholds": []}, "quota_thresholds"),
        ({"quota_thresholds": ["80"]}, "quota_thresholds"),
        ({"quota_thresholds": [80.5]}, "quota_thresholds"),
        ({"quota_thresholds": [True]}, "quota_thresholds"),
        ({"quota_thresholds": 80}, "quota_thresholds"),
        ({"quota_thresholds": None}, "quota_thresholds"),
        ({"limit_thresholds": [50, "x"]}, "limit_thresholds"),
        ({"limit_thresholds": {"a": 1}}, "limit_thresholds"),
        ({"credits_low_balance": -1}, "credits_low_balance"),
        ({"credits_low_balance": "20"}, "credits_low_balance"),
        ({"credits_low_balance": 2.5}, "credits_low_balance"),
        ({"email_enabled": "yes"}, "email_enabled"),
        ({"email_enabled": 1}, "email_enabled"),
    ],
)
def test_bad_values_are_a_400_that_names_the_field_and_change_nothing(owner_client, body, param):
    response = owner_client.patch(URL, {"limit_thresholds": [10, 20], **body}, format="json")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]
    assert not NotificationSettings.objects.exists()  # the valid field beside it was not saved


def test_a_body_that_is_not_an_object_is_a_400(owner_client):
    for body in ([80, 100], "80"):
        response = owner_client.patch(URL, body, format="json")
        assert response.status_code == 400
        assert response.json()["error"]["code"] in ("invalid_request", "invalid_json")
    broken = owner_client.generic("PATCH", URL, "{not json", content_type="application/json")
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("role", ["owner", "admin", "billing", "developer"])
def test_each_role_reads_and_changes_as_the_role_table_says(team, role):
    workspace, owner, _ = team
    user = owner if role == "owner" else member_add(workspace, role=role)
    client = client_for(user, workspace)

    read = client.get(URL)
    changed = client.patch(URL, {"quota_thresholds": [60]}, format="json")

    assert (read.status_code == 200) is role_can(role, "billing.read")
    assert (changed.status_code == 200) is role_can(role, "billing.manage")
    if not role_can(role, "billing.manage"):
        assert changed.status_code == 403
        assert changed.json()["error"]["required_role"] == roles_allowed("billing.manage")
        assert not NotificationSettings.objects.exists()
    else:
        assert NotificationSettings.objects.get(workspace=workspace).quota_thresholds == [60]


def test_a_non_member_gets_404_and_each_workspace_has_its_own(team):
    workspace, owner, _ = team
    stranger = client_for(UserFactory(), workspace)
    assert stranger.get(URL).status_code == 404
    assert stranger.patch(URL, {"quota_thresholds": [10]}, format="json").status_code == 404

    elsewhere = UserFactory()
    assert client_for(elsewhere).patch(URL, {"quota_thresholds": [10]}, format="json").status_code == 200
    assert client_for(owner, workspace).get(URL).json()["quota_thresholds"] == [80, 100]
    assert NotificationSettings.objects.get().workspace == elsewhere.personal_workspace
