"""The Keys page (``/keys/``): the workspace's proxy keys with their limits and actions, and
which provider key calls use."""

import re

import pytest
from django.utils import timezone

from accounts.models import ApiKey, Role
from accounts.services import api_key_create, api_key_limits_set
from accounts.tenancy import SESSION_WORKSPACE_KEY
from billing.models import KeyUsageCounter
from billing.services.key_limits import key_limit_period
from dashboards.tests.factories import ApiKeyFactory, team_workspace_create

pytestmark = pytest.mark.django_db


def _switch(client, workspace):
    session = client.session
    session[SESSION_WORKSPACE_KEY] = workspace.pk
    session.save()


def test_the_keys_page_needs_login(client):
    response = client.get("/keys/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_creating_a_key_on_the_keys_page_comes_back_to_it_and_shows_the_key_once(client, user):
    workspace = user.personal_workspace
    client.force_login(user)

    response = client.post("/dashboard/keys/", {"name": "laptop", "next": "/keys/"})

    assert response.status_code == 302 and response["Location"] == "/keys/"
    key = ApiKey.objects.get(workspace=workspace, name="laptop")
    first = client.get("/keys/").content.decode()
    assert 'aria-current="page" data-tab="keys"' in first  # the Keys tab is the current one
    plaintext = re.search(r'<code class="secret" id="new-key-value">(sk_agentai_\S+)</code>', first)[1]
    assert plaintext.startswith(key.prefix) and f'data-key-id="{key.pk}"' in first
    again = client.get("/keys/").content.decode()  # a reload shows the key in the list only
    assert f'data-key-id="{key.pk}"' in again and plaintext not in again and "new-key-value" not in again
    assert ApiKey.objects.filter(workspace=workspace).count() == 1


def test_a_key_form_without_next_returns_to_the_keys_page(client, user):
    client.force_login(user)
    response = client.post("/dashboard/keys/", {"name": "ci"})
    assert response["Location"] == "/keys/"


def test_global_provider_keys_show_to_staff_only(client, user, staff_user):
    client.force_login(user)
    html = client.get("/keys/").content.decode()
    assert 'id="provider-keys"' in html and "Global key (operator)" not in html
    client.force_login(staff_user)
    assert "Global key (operator)" in client.get("/keys/").content.decode()


def test_a_developer_sees_only_their_keys_and_no_provider_keys(client, user, other_user):
    team = team_workspace_create(owner=other_user, members={user: Role.DEVELOPER})
    theirs = ApiKeyFactory(workspace=team, created_by=other_user, name="owners-key")
    mine = ApiKeyFactory(workspace=team, created_by=user, name="devs-key")
    client.force_login(user)
    _switch(client, team)

    html = client.get("/keys/").content.decode()

    assert mine.prefix in html and f"/dashboard/keys/{mine.pk}/revoke/" in html
    assert theirs.prefix not in html  # keys.manage_any, as GET /api/keys
    assert 'id="provider-keys"' not in html  # provider_keys.read


def test_an_admin_sees_and_may_revoke_every_members_key_with_its_creator(client, user, other_user):
    team = team_workspace_create(owner=other_user, members={user: Role.ADMIN})
    theirs = ApiKeyFactory(workspace=team, created_by=other_user, name="owners-key")
    client.force_login(user)
    _switch(client, team)

    html = client.get("/keys/").content.decode()

    assert f"/dashboard/keys/{theirs.pk}/revoke/" in html and f"by {other_user.email}" in html


def test_the_key_list_shows_each_limit_with_its_use(client, user):
    workspace = user.personal_workspace
    api_key, _plaintext = api_key_create(workspace=workspace, created_by=user, name="capped")
    api_key_limits_set(
        workspace=workspace, key_id=api_key.pk, limits=[{"unit": "requests", "window": "day", "amount": 100}]
    )
    start, _reset = key_limit_period(window="day", now=timezone.now())
    KeyUsageCounter.objects.create(api_key=api_key, unit="requests", window="day", period_start=start, used=7)
    client.force_login(user)

    page = client.get("/keys/").content.decode()

    row = page[page.index(f'data-key-id="{api_key.pk}"') :]
    cell = row[row.index("data-key-limits") : row.index("</td>", row.index("data-key-limits"))]
    assert "7 requests of 100 requests per day" in " ".join(cell.split())
