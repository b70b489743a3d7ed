"""``PATCH /api/keys/{id}``: a key's limits and model allow-list (validation, roles, audit, the
cached identity re-published) and the key list showing each limit's use."""

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts.models import AuditEvent, Role
from accounts.selectors import api_key_cache_key, api_key_identity_get
from accounts.tests.factories import api_key_for, member_add, team_workspace
from billing.models import KeyUsageCounter
from billing.services.key_limits import key_limit_period

pytestmark = pytest.mark.django_db

LIMITS = [
    {"unit": "requests", "window": "day", "amount": 100},
    {"unit": "tokens", "window": "total", "amount": 50_000},
]


@pytest.fixture
def team(user):
    return team_workspace(owner=user, name="Acme")


@pytest.fixture
def developer(team):
    return member_add(team, role=Role.DEVELOPER)


@pytest.fixture
def admin(team):
    return member_add(team, role=Role.ADMIN)


def _client(user, workspace) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    client.credentials(HTTP_X_WORKSPACE=str(workspace.pk))
    return client


def test_an_admin_sets_a_members_key_limits_and_the_proxy_sees_them_at_once(
    team, developer, admin, django_capture_on_commit_callbacks
):
    api_key, plaintext = api_key_for(developer, workspace=team)
    assert api_key_identity_get(raw_key=plaintext).limits == ()  # cached before the change

    with django_capture_on_commit_callbacks(execute=True):
        response = _client(admin, team).patch(
            f"/api/keys/{api_key.pk}", {"limits": LIMITS, "allowed_models": ["gpt-4o"]}, format="json"
        )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert [(item["unit"], item["window"], item["amount"], item["used"]) for item in body["limits"]] == [
        ("requests", "day", 100, 0),
        ("tokens", "total", 50_000, 0),
    ]
    assert body["allowed_models"] == ["gpt-4o"]
    identity = api_key_identity_get(raw_key=plaintext)
    assert identity.limits == (("requests", "day", 100), ("tokens", "total", 50_000))
    assert identity.allowed_models == ("gpt-4o",)
    assert cache.get(api_key_cache_key(api_key.key_hash)) == identity
    event = AuditEvent.objects.get(action="api_key.limits_changed")
    assert (event.actor_id, event.target) == (admin.pk, f"api_key:{api_key.pk}")


def test_a_developer_sets_limits_on_their_own_key_but_not_on_another_members(team, developer, admin):
    own, _ = api_key_for(developer, workspace=team)
    admins, _ = api_key_for(admin, workspace=team)
    client = _client(developer, team)

    assert client.patch(f"/api/keys/{own.pk}", {"limits": LIMITS}, format="json").status_code == 200
    refused = client.patch(f"/api/keys/{admins.pk}", {"limits": LIMITS}, format="json")

    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    admins.refresh_from_db()
    assert admins.limits == []


def test_another_workspaces_key_is_404(team, user):
    outsider_key, _ = api_key_for(user)  # the owner's personal workspace, not the team's
    response = _client(user, team).patch(f"/api/keys/{outsider_key.pk}", {"limits": []}, format="json")
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"limits": {"unit": "requests"}}, "limits"),
        ({"limits": [{"unit": "requests", "window": "day"}]}, "limits[0]"),
        ({"limits": [{"unit": "requests", "window": "week", "amount": 5}]}, "limits[0].window"),
        ({"limits": [{"unit": "calls", "window": "day", "amount": 5}]}, "limits[0].unit"),
        ({"limits": [{"unit": "money", "window": "day", "amount": "12.50"}]}, "limits[0].amount"),
        ({"limits": [{"unit": "requests", "window": "day", "amount": 0}]}, "limits[0].amount"),
        ({"limits": [{"unit": "requests", "window": "day", "amount": 1.5}]}, "limits[0].amount"),
        ({"limits": [{"unit": "requests", "window": "day", "amount": True}]}, "limits[0].amount"),
        ({"limits": [{"unit": "requests", "window": "day", "amount": "5"}]}, "limits[0].amount"),
        ({"limits": [LIMITS[0], LIMITS[0]]}, "limits[1]"),
        ({"allowed_models": "gpt-4o"}, "allowed_models"),
        ({"allowed_models": [3]}, "allowed_models"),
        ({"allowed_models": ["x" * 129]}, "allowed_models"),
        ({"allowed_models": [f"m{i}" for i in range(51)]}, "allowed_models"),
        ({"name": "renamed"}, "name"),
    ],
)
def test_invalid_limits_are_400_and_change_nothing(team, user, body, param):
    api_key, _ = api_key_for(user, workspace=team)
    response = _client(user, team).patch(f"/api/keys/{api_key.pk}", body, format="json")
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_request", param)
    api_key.refresh_from_db()
    assert (api_key.limits, api_key.allowed_models) == ([], [])
    assert not AuditEvent.objects.filter(action="api_key.limits_changed").exists()


def test_credit_and_money_limits_are_accepted_and_listed_with_their_currency(team, user):
    api_key, _ = api_key_for(user, workspace=team)
    limits = [
        {"unit": "credits", "window": "month", "amount": 500},
        {"unit": "money", "window": "day", "amount": 1250},
    ]
    client = _client(user, team)
    response = client.patch(f"/api/keys/{api_key.pk}", {"limits": limits}, format="json")
    assert response.status_code == 200, response.json()
    api_key.refresh_from_db()
    assert api_key.limits == limits
    start, _ = key_limit_period(window="day", now=api_key.created_at)
    # Money is counted in millionths of a euro: 12.345 EUR used reads as 1235 cents (rounded up).
    KeyUsageCounter.objects.create(
        api_key=api_key, unit="money", window="day", period_start=start, used=12_345_000
    )

    entry = next(item for item in client.get("/api/keys").json() if item["id"] == api_key.pk)

    listed = {(item["unit"], item["amount"], item["used"], item["currency"]) for item in entry["limits"]}
    assert listed == {("credits", 500, 0, None), ("money", 1250, 1235, "eur")}


def test_an_unknown_limit_unit_is_400(team, user):
    api_key, _ = api_key_for(user, workspace=team)
    body = {"limits": [{"unit": "usd", "window": "month", "amount": 500}]}
    response = _client(user, team).patch(f"/api/keys/{api_key.pk}", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "limits[0].unit"


def test_the_key_list_shows_each_limits_use_in_its_window(team, user):
    api_key, _ = api_key_for(user, workspace=team)
    client = _client(user, team)
    client.patch(f"/api/keys/{api_key.pk}", {"limits": LIMITS}, format="json")
    start, resets_at = key_limit_period(window="day", now=api_key.created_at)
    KeyUsageCounter.objects.create(
        api_key=api_key, unit="requests", window="day", period_start=start, used=7, reserved=2
    )
    total_start, _ = key_limit_period(window="total", now=api_key.created_at)
    KeyUsageCounter.objects.create(
        api_key=api_key, unit="tokens", window="total", period_start=total_start, used=1234
    )

    listed = client.get("/api/keys").json()

    entry = next(item for item in listed if item["id"] == api_key.pk)
    by_unit = {item["unit"]: item for item in entry["limits"]}
    assert by_unit["requests"]["used"] == 9  # settled + in flight
    assert by_unit["requests"]["resets_at"] == resets_at.isoformat().replace("+00:00", "Z")
    assert (by_unit["tokens"]["used"], by_unit["tokens"]["resets_at"]) == (1234, None)


def test_removing_limits_and_allow_list(team, user):
    api_key, _ = api_key_for(user, workspace=team)
    client = _client(user, team)
    client.patch(f"/api/keys/{api_key.pk}", {"limits": LIMITS, "allowed_models": ["gpt-4o"]}, format="json")
    response = client.patch(f"/api/keys/{api_key.pk}", {"limits": [], "allowed_models": []}, format="json")
    assert response.status_code == 200
    api_key.refresh_from_db()
    assert (api_key.limits, api_key.allowed_models) == ([], [])
