"""The /notifications/ page: the thresholds form (Post/Redirect/Get, errors as a message with
nothing saved), read-only for a role that may read billing but not change it, the 403 page for
a developer, the webhook endpoints for owners and admins, and the link in the navigation."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.tests.factories import member_add
from notifications.models import NotificationSettings

pytestmark = pytest.mark.django_db

PAGE = "/notifications/"


def _client(user, workspace) -> Client:
    client = Client(HTTP_X_WORKSPACE=str(workspace.pk))
    client.force_login(user)
    return client


def test_the_form_saves_then_redirects_and_shows_the_values(team):
    workspace, owner, _ = team
    client = _client(owner, workspace)
    page = client.get(PAGE)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'href="/notifications/"' in html  # the navigation link
    assert 'value="80, 100"' in html

    response = client.post(
        PAGE,
        {
            "quota_thresholds": "50, 90%",
            "limit_thresholds": "100",
            "credits_low_balance": "35",
            "email_enabled": "on",
        },
    )

    assert response.status_code == 302 and response["Location"] == PAGE
    row = NotificationSettings.objects.get(workspace=workspace)
    assert (row.quota_thresholds, row.limit_thresholds, row.credits_low_balance, row.email_enabled) == (
        [50, 90],
        [100],
        35,
        True,
    )
    html = client.get(PAGE).content.decode()
    assert "Alert thresholds saved." in html
    assert 'value="50, 90"' in html and 'value="100"' in html and 'value="35"' in html

    client.post(PAGE, {"quota_thresholds": "50", "limit_thresholds": "100", "credits_low_balance": ""})
    row.refresh_from_db()
    assert row.email_enabled is False and row.credits_low_balance is None  # unchecked; blank: default


@pytest.mark.parametrize(
    "form",
    [
        {"quota_thresholds": "80, abc", "limit_thresholds": "100"},
        {"quota_thresholds": "0", "limit_thresholds": "100"},
        {"quota_thresholds": "10,20,30,40,50,60", "limit_thresholds": "100"},
        {"quota_thresholds": "80", "limit_thresholds": "100", "credits_low_balance": "-4"},
    ],
)
def test_a_bad_value_is_a_message_after_the_redirect_and_nothing_is_saved(team, form):
    workspace, owner, _ = team
    client = _client(owner, workspace)

    response = client.post(PAGE, form, follow=True)

    assert response.redirect_chain == [(PAGE, 302)]
    assert response.status_code == 200
    assert not NotificationSettings.objects.exists()
    messages = [str(message) for message in response.context["messages"]]
    assert len(messages) == 1 and messages[0] != "Alert thresholds saved."


def test_owners_see_the_webhook_endpoints_billing_members_read_and_change_thresholds_only(team, endpoint_for):
    workspace, owner, _ = team
    endpoint_for(workspace, owner, "https://93.184.215.14/hooks/listed", ["credits.low"])

    owner_html = _client(owner, workspace).get(PAGE).content.decode()
    assert "https://93.184.215.14/hooks/listed" in owner_html and 'href="/webhooks/"' in owner_html

    accountant = member_add(workspace, role="billing")
    client = _client(accountant, workspace)
    html = client.get(PAGE).content.decode()
    assert "https://93.184.215.14/hooks/listed" not in html
    assert "Save thresholds" in html
    assert client.post(PAGE, {"quota_thresholds": "70", "limit_thresholds": "100"}).status_code == 302
    assert NotificationSettings.objects.get(workspace=workspace).quota_thresholds == [70]


def test_a_developer_gets_the_403_page_and_changes_nothing(team):
    workspace, _owner, developer = team
    client = _client(developer, workspace)

    assert client.get(PAGE).status_code == 403
    assert client.post(PAGE, {"quota_thresholds": "10", "limit_thresholds": "10"}).status_code == 403
    assert not NotificationSettings.objects.exists()
