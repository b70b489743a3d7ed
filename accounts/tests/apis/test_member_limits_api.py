"""A member's monthly spend cap: ``PATCH /api/workspaces/{id}/members/{user_id}`` with ``limits``
(validation, who may, audit, the cached identities of the member's keys re-published), the
members list showing each cap's use, and the members page's form (Post/Redirect/Get)."""

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import AuditEvent, Membership, Role
from accounts.selectors import api_key_identity_get
from accounts.tests.factories import api_key_for, member_add, team_workspace
from billing.models import KeyUsageCounter
from billing.services.key_limits import key_limit_period

pytestmark = pytest.mark.django_db

CAP = [{"unit": "credits", "amount": 500}]


@pytest.fixture
def team(user):
    return team_workspace(owner=user, name="Acme")


@pytest.fixture
def developer(team):
    return member_add(team, role=Role.DEVELOPER)


@pytest.fixture
def admin(team):
    return member_add(team, role=Role.ADMIN)


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _url(workspace, user) -> str:
    return f"/api/workspaces/{workspace.pk}/members/{user.pk}"


def test_an_admin_caps_a_member_and_every_key_of_theirs_carries_it_at_once(
    team, developer, admin, django_capture_on_commit_callbacks
):
    _first, first = api_key_for(developer, workspace=team)
    _second, second = api_key_for(developer, workspace=team)
    assert api_key_identity_get(raw_key=first).member_limits == ()  # cached before the change

    with django_capture_on_commit_callbacks(execute=True):
        response = _client(admin).patch(_url(team, developer), {"limits": CAP}, format="json")

    assert response.status_code == 200, response.json()
    assert [(i["unit"], i["window"], i["amount"], i["used"]) for i in response.json()["limits"]] == [
        ("credits", "month", 500, 0)
    ]
    membership = Membership.objects.get(workspace=team, user=developer)
    for plaintext in (first, second):
        identity = api_key_identity_get(raw_key=plaintext)
        assert (identity.member_id, identity.member_limits) == (membership.pk, (("credits", "month", 500),))
    audit = AuditEvent.objects.get(action="member.limits_changed")
    assert (audit.actor, audit.target, audit.details["to"]) == (
        admin,
        f"user:{developer.pk}",
        [{"unit": "credits", "window": "month", "amount": 500}],
    )


def test_the_members_list_shows_each_caps_use_this_month(team, developer, user):
    Membership.objects.filter(workspace=team, user=developer).update(limits=[dict(CAP[0], window="month")])
    membership = Membership.objects.get(workspace=team, user=developer)
    start, _reset = key_limit_period(window="month", now=timezone.now())
    KeyUsageCounter.objects.create(
        membership=membership, unit="credits", window="month", period_start=start, used=120, reserved=5
    )

    members = _client(user).get(f"/api/workspaces/{team.pk}/members").json()

    capped = next(m for m in members if m["user_id"] == developer.pk)
    assert [(i["amount"], i["used"]) for i in capped["limits"]] == [(500, 125)]
    assert capped["limits"][0]["resets_at"].endswith("Z")
    owner = next(m for m in members if m["user_id"] == user.pk)
    assert owner["limits"] == []


@pytest.mark.parametrize(
    ("limits", "param"),
    [
        ("lots", "limits"),
        ([{"unit": "requests", "amount": 5}], "limits[0].unit"),
        ([{"unit": "money", "amount": 5, "window": "day"}], "limits[0].window"),
        ([{"unit": "money", "amount": 0}], "limits[0].amount"),
        ([{"unit": "money", "amount": True}], "limits[0].amount"),
        ([{"unit": "money", "amount": "5"}], "limits[0].amount"),
        ([{"unit": "money", "amount": 5}, {"unit": "money", "amount": 6}], "limits[1]"),
        ([{"unit": "money"}], "limits[0]"),
    ],
)
def test_a_bad_cap_is_refused_with_the_field_named(team, developer, user, limits, param):
    response = _client(user).patch(_url(team, developer), {"limits": limits}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert Membership.objects.get(workspace=team, user=developer).limits == []


def test_an_unknown_field_or_an_empty_body_is_refused(team, developer, user):
    client = _client(user)
    assert client.patch(_url(team, developer), {"cap": 5}, format="json").json()["error"]["param"] == "cap"
    assert client.patch(_url(team, developer), {}, format="json").status_code == 400


def test_a_developer_cannot_cap_anyone_and_an_admin_cannot_cap_an_owner(team, developer, admin, user):
    refused = _client(developer).patch(_url(team, developer), {"limits": CAP}, format="json")
    assert refused.status_code == 403

    refused = _client(admin).patch(_url(team, user), {"limits": CAP}, format="json")
    assert refused.status_code == 403
    assert refused.json()["error"]["required_role"] == ["owner"]
    assert not AuditEvent.objects.filter(action="member.limits_changed").exists()


def test_role_and_cap_change_together_or_not_at_all(team, developer, user):
    response = _client(user).patch(
        _url(team, developer), {"role": "admin", "limits": [{"unit": "bogus", "amount": 1}]}, format="json"
    )

    assert response.status_code == 400
    assert Membership.objects.get(workspace=team, user=developer).role == Role.DEVELOPER


def test_the_members_page_sets_and_lifts_a_cap(client, team, developer, user):
    client.force_login(user)
    url = f"/workspaces/{team.pk}/members/{developer.pk}/limits/"

    response = client.post(url, {"unit": "money", "amount": "12.50"})

    assert response.status_code == 302 and response.url == f"/workspaces/{team.pk}/members/"
    membership = Membership.objects.get(workspace=team, user=developer)
    assert membership.limits == [{"unit": "money", "window": "month", "amount": 1250}]
    page = client.get(response.url).content.decode()
    assert "12.50" in page and "this month" in page

    assert client.post(url, {"unit": "credits", "amount": "2.5"}).status_code == 302  # refused: kept
    assert Membership.objects.get(pk=membership.pk).limits[0]["amount"] == 1250

    client.post(url, {"unit": "none"})
    assert Membership.objects.get(pk=membership.pk).limits == []


def test_a_developer_gets_no_cap_form_and_cannot_post_one(client, team, developer):
    client.force_login(developer)

    page = client.get(f"/workspaces/{team.pk}/members/").content.decode()
    assert "Set the cap" not in page
    response = client.post(f"/workspaces/{team.pk}/members/{developer.pk}/limits/", {"unit": "none"})
    assert response.status_code == 403
