"""``GET /api/usage/spend``: the spend overview as JSON for the request's workspace (session,
token or proxy key), with ``usage.read``; bad parameters answer 400 ``invalid_request``."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from rest_framework.test import APIClient

from accounts.models import Role
from accounts.services import api_key_create
from dashboards.tests.factories import ApiKeyFactory, UserFactory, team_workspace_create
from dashboards.tests.spend_helpers import spend_row

pytestmark = pytest.mark.django_db
URL = "/api/usage/spend"
NOW = datetime(2026, 12, 6, 15, 20, tzinfo=UTC)


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False):
        yield NOW


def test_anonymous_callers_get_401(api_client):
    response = api_client.get(URL)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_the_last_7_days_by_day_model_and_key(clock, api_client, user, workspace):
    key = ApiKeyFactory(workspace=workspace, created_by=user, name="backend")
    spend_row(workspace, datetime(2026, 12, 6, 9, tzinfo=UTC), key=key, requests=2, prompt_tokens=20,
              completion_tokens=30, charge_credits=12, charge_micros=150_000)  # fmt: skip
    spend_row(workspace, datetime(2026, 12, 1, 9, tzinfo=UTC), key=key, model="gpt-4o-mini", charge_credits=1)
    api_client.force_authenticate(user)

    response = api_client.get(URL, {"range": "7d"})

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["range"], body["granularity"], body["time_zone"]) == ("7d", "day", "UTC")
    assert (body["date_from"], body["date_to"]) == ("2026-11-30", "2026-12-06")
    assert [b["charge_credits"] for b in body["series"]] == [0, 1, 0, 0, 0, 0, 12]
    assert body["series"][0]["start"] == "2026-11-30T00:00:00+00:00"
    assert body["totals"] == {
        "requests": 3,
        "errors": 0,
        "prompt_tokens": 20,
        "completion_tokens": 30,
        "charge_credits": 13,
        "charge": [{"currency": "eur", "amount": 0.15, "micros": 150_000}],
    }
    assert [m["model"] for m in body["by_model"]] == ["gpt-4o", "gpt-4o-mini"]
    assert [(k["key_id"], k["name"], k["prefix"]) for k in body["by_key"]] == [
        (key.pk, "backend", key.prefix)
    ]


def test_24h_is_hourly_and_tz_moves_the_day_edges(clock, api_client, user, workspace):
    spend_row(workspace, datetime(2026, 12, 5, 23, tzinfo=UTC), charge_credits=5)  # Dec 6 in Paris
    api_client.force_authenticate(user)

    hourly = api_client.get(URL, {"range": "24h"}).json()
    paris = api_client.get(URL, {"from": "2026-12-06", "to": "2026-12-06", "tz": "Europe/Paris"}).json()
    utc = api_client.get(URL, {"from": "2026-12-06", "to": "2026-12-06"}).json()

    assert (hourly["granularity"], len(hourly["series"]), hourly["totals"]["charge_credits"]) == (
        "hour",
        24,
        5,
    )
    assert (paris["range"], paris["time_zone"]) == ("custom", "Europe/Paris")
    assert paris["series"] == [{**paris["series"][0], "start": "2026-12-06T00:00:00+01:00"}]
    assert paris["totals"]["charge_credits"] == 5
    assert utc["totals"]["charge_credits"] == 0


def test_the_profile_time_zone_is_the_default(clock, api_client, user, workspace):
    user.time_zone = "Europe/Paris"
    user.save(update_fields=["time_zone"])
    spend_row(workspace, datetime(2026, 12, 5, 23, tzinfo=UTC), charge_credits=5)
    api_client.force_authenticate(user)

    body = api_client.get(URL, {"from": "2026-12-06", "to": "2026-12-06"}).json()

    assert (body["time_zone"], body["totals"]["charge_credits"]) == ("Europe/Paris", 5)


def test_a_proxy_key_reads_its_workspaces_spend(clock, user, workspace, other_workspace):
    _key, plaintext = api_key_create(workspace=workspace, created_by=user, name="ci")
    spend_row(workspace, NOW - timedelta(hours=1), charge_credits=4)
    spend_row(other_workspace, NOW - timedelta(hours=1), charge_credits=400)
    client = APIClient()

    response = client.get(URL, {"range": "24h"}, HTTP_AUTHORIZATION=f"Bearer {plaintext}")

    assert response.status_code == 200
    assert response.json()["totals"]["charge_credits"] == 4


def test_another_workspace_is_404_and_a_developer_sees_only_own_keys(
    clock, api_client, user, other_workspace
):
    developer = UserFactory()
    team = team_workspace_create(owner=user, members={developer: Role.DEVELOPER})
    own = ApiKeyFactory(workspace=team, created_by=developer, name="mine")
    spend_row(team, NOW - timedelta(hours=1), key=own, charge_credits=2)
    spend_row(
        team, NOW - timedelta(hours=1), key=ApiKeyFactory(workspace=team, created_by=user), charge_credits=9
    )
    api_client.force_authenticate(developer)

    response = api_client.get(URL, HTTP_X_WORKSPACE=str(team.pk))
    foreign = api_client.get(URL, HTTP_X_WORKSPACE=str(other_workspace.pk))

    assert response.status_code == 200
    assert [k["name"] for k in response.json()["by_key"]] == ["mine"]
    assert foreign.status_code == 404


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"range": "1y"}, "range"),
        ({"from": "2026-12-01"}, "to"),
        ({"from": "yesterday", "to": "2026-12-01"}, "from"),
        ({"from": "2026-12-05", "to": "2026-12-01"}, "to"),
        ({"from": "2020-01-01", "to": "2026-12-01"}, "to"),
        ({"range": "7d", "from": "2026-12-01", "to": "2026-12-02"}, "range"),
        ({"tz": "Mars/Olympus"}, "tz"),
    ],
)
def test_bad_parameters_answer_400_naming_the_parameter(clock, api_client, user, query, param):
    api_client.force_authenticate(user)

    response = api_client.get(URL, query)

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["type"], error["param"]) == (
        "invalid_request",
        "invalid_request_error",
        param,
    )


def test_the_endpoint_is_in_the_openapi_schema(api_client):
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"]["/api/usage/spend"]["get"]
    assert operation["operationId"] == "usage_spend_get"
    assert {p["name"] for p in operation["parameters"]} >= {"range", "from", "to", "tz"}
    assert {"200", "400", "401"} <= set(operation["responses"])
