import json
import uuid
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from organizations.models import Organization, UsageReport

from .conftest import OLD_TOKEN, TOKEN
from .factories import LinkedOrganizationFactory

URL = "/api/usage-report"
pytestmark = pytest.mark.django_db


def payload(**overrides):
    body = {
        "organization_id": "5b0c8f7e-2a51-4c61-9d3f-0c1f1d2e3a4b",
        "organization_name": "Acme Corp",
        "instance_url": "acme.vaultai.eu",
        "user_count": 45,
        "timestamp": timezone.now().isoformat(),
    }
    body.update(overrides)
    return body


def post(client, body, token=TOKEN, **extra):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(URL, data=data, content_type="application/json", **headers, **extra)


def test_first_report_creates_pending_organization_with_original_shape(client, billing_tokens):
    response = post(client, payload())

    assert response.status_code == 200
    body = response.json()
    report = UsageReport.objects.get()
    assert body == {
        "success": True,
        "message": "Usage report received",
        "report_id": str(report.pk),
        "organization_status": "pending",
    }
    organization = Organization.objects.get()
    assert str(organization.pk) == "5b0c8f7e-2a51-4c61-9d3f-0c1f1d2e3a4b"
    assert (organization.name, organization.instance_url) == ("Acme Corp", "acme.vaultai.eu")
    assert organization.latest_user_count == 45
    assert report.billing_status == UsageReport.BillingStatus.UNBILLED


def test_same_day_repeat_is_a_duplicate_with_the_same_report_id(client, billing_tokens):
    timestamp = timezone.now().isoformat()  # one instant: the two posts may straddle midnight
    first = post(client, payload(user_count=45, timestamp=timestamp)).json()
    second = post(client, payload(user_count=50, timestamp=timestamp))

    assert second.status_code == 200
    assert second.json() == {**first, "duplicate": True}
    assert UsageReport.objects.count() == 1
    assert UsageReport.objects.get().user_count == 45


def test_next_day_report_refreshes_name_url_and_count(client, billing_tokens):
    post(client, payload(timestamp=(timezone.now() - timedelta(days=1)).isoformat()))
    response = post(
        client, payload(organization_name="Acme SAS", instance_url="vault.acme.eu", user_count=60)
    )

    assert response.status_code == 200
    assert "duplicate" not in response.json()
    organization = Organization.objects.get()
    assert (organization.name, organization.instance_url, organization.latest_user_count) == (
        "Acme SAS",
        "vault.acme.eu",
        60,
    )
    assert UsageReport.objects.count() == 2


def test_linked_organization_reports_status(client, billing_tokens, django_capture_on_commit_callbacks):
    organization = LinkedOrganizationFactory(status=Organization.Status.TRIAL)
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(client, payload(organization_id=str(organization.pk)))

    assert response.json()["organization_status"] == "trial"
    assert UsageReport.objects.get().billing_status == UsageReport.BillingStatus.PENDING
    assert len(callbacks) == 1  # the meter event is queued only after commit


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"HTTP_AUTHORIZATION": "Bearer wrong-token"},
        {"HTTP_AUTHORIZATION": f"Basic {TOKEN}"},
        {"HTTP_AUTHORIZATION": f"Bearer {TOKEN} extra"},
        {"HTTP_AUTHORIZATION": "Bearer "},
    ],
)
def test_missing_or_wrong_token_is_401(client, billing_tokens, headers):
    response = client.post(URL, data=json.dumps(payload()), content_type="application/json", **headers)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert TOKEN not in response.content.decode()
    assert not Organization.objects.exists()


def test_rotation_accepts_the_previous_token_too(client, billing_tokens):
    assert post(client, payload(), token=OLD_TOKEN).status_code == 200


def test_rotation_finished_rejects_the_old_token(client, settings):
    settings.BILLING_API_TOKEN = [TOKEN]
    assert post(client, payload(), token=OLD_TOKEN).status_code == 401
    assert post(client, payload(), token=TOKEN).status_code == 200


def test_no_configured_token_accepts_nothing(client, settings):
    settings.BILLING_API_TOKEN = []
    assert post(client, payload(), token="").status_code == 401
    settings.BILLING_API_TOKEN = [""]
    assert post(client, payload(), token="").status_code == 401


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"organization_id": "abc-123-def-456"}, "organization_id"),
        ({"organization_id": None}, "organization_id"),
        ({"organization_name": ""}, "organization_name"),
        ({"organization_name": "   "}, "organization_name"),
        ({"organization_name": "x" * 201}, "organization_name"),
        ({"user_count": -1}, "user_count"),
        ({"user_count": "45"}, "user_count"),
        ({"user_count": 4.5}, "user_count"),
        ({"user_count": True}, "user_count"),
        ({"user_count": 10_000_001}, "user_count"),
        ({"timestamp": "yesterday"}, "timestamp"),
        # Offsets from the time of the request, not of collection: the suite may run for minutes.
        ({"timestamp": timedelta(minutes=10)}, "timestamp"),
        ({"timestamp": -timedelta(days=36)}, "timestamp"),
    ],
)
def test_validation_errors_are_400_with_the_field(client, billing_tokens, overrides, field):
    if isinstance(overrides.get("timestamp"), timedelta):
        overrides = {**overrides, "timestamp": (timezone.now() + overrides["timestamp"]).isoformat()}
    response = post(client, payload(**overrides))

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["param"] == field
    assert field in error["errors"]
    assert not UsageReport.objects.exists()


@pytest.mark.parametrize("missing", ["organization_id", "organization_name", "user_count", "timestamp"])
def test_missing_required_field_is_400(client, billing_tokens, missing):
    body = payload()
    del body[missing]
    response = post(client, body)
    assert response.status_code == 400
    assert missing in response.json()["error"]["errors"]


def test_unknown_fields_are_ignored_and_limits_are_inclusive(client, billing_tokens, settings):
    settings.ORG_USER_COUNT_MAX = 500
    response = post(client, payload(user_count=500, deployment_type="on-premise", extra={"a": 1}))
    assert response.status_code == 200
    assert post(client, payload(user_count=0, organization_id=str(uuid.uuid4()))).status_code == 200


@pytest.mark.parametrize("body", ["not json", "[1, 2]", "", "null"])
def test_malformed_body_is_400(client, billing_tokens, body):
    response = post(client, body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_body_over_64_kib_is_413(client, billing_tokens):
    response = post(client, payload(padding="x" * (64 * 1024)))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert not Organization.objects.exists()


def test_declared_content_length_over_64_kib_is_413_before_reading(client, billing_tokens):
    response = post(client, payload(), CONTENT_LENGTH=str(10 * 1024 * 1024))
    assert response.status_code == 413


def test_rate_limited_per_organization(client, billing_tokens, settings):
    settings.ORG_USAGE_REPORT_RATE = "2/h"
    # The clock stands still: the calls must share one window (it ends at an id-dependent second).
    with time_machine.travel(timezone.now(), tick=False):
        assert post(client, payload()).status_code == 200
        assert post(client, payload()).status_code == 200
        limited = post(client, payload())
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert limited["Retry-After"]
    # Another organization has its own budget.
    assert post(client, payload(organization_id=str(uuid.uuid4()))).status_code == 200


def test_get_is_405_in_error_shape(client, billing_tokens):
    response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_report_path_query_count(client, billing_tokens, django_assert_max_num_queries):
    post(client, payload(timestamp=(timezone.now() - timedelta(days=1)).isoformat()))
    with django_assert_max_num_queries(9):
        assert post(client, payload()).status_code == 200
