"""The viewer's time zone: the profile's, else the browser's (``tz`` cookie), else UTC; on
pages only (APIs stay UTC), at no extra query."""

from datetime import UTC, datetime

import pytest
import time_machine
from asgiref.sync import async_to_sync
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.test import AsyncClient, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.services import audit_record, workspace_create
from accounts.tests.factories import UserFactory
from core.timezones import TimeZoneMiddleware, time_zone_get, viewer_time_zone_get

# 12:00 UTC on a summer day: 14:00 in Paris (CEST, UTC+2), 13:00 in Algiers (CET all year).
SUMMER_NOON_UTC = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)


class _User:
    def __init__(self, time_zone=""):
        self.time_zone = time_zone


@pytest.mark.parametrize(
    ("profile", "cookie", "expected"),
    [
        ("Europe/Paris", "Asia/Tokyo", "Europe/Paris"),  # the profile wins
        ("", "Asia/Tokyo", "Asia/Tokyo"),  # else the browser's
        ("", "", None),  # else UTC
        ("", "Mars/Olympus_Mons", None),  # a made-up cookie is ignored
        ("", "../../etc/passwd", None),
        ("", "Asia%2FTokyo", "Asia/Tokyo"),  # percent-encoded by some clients
        ("Not/AZone", "Asia/Tokyo", "Asia/Tokyo"),  # a stale profile value falls through
    ],
)
def test_profile_then_cookie_then_utc(profile, cookie, expected):
    cookies = {"tz": cookie} if cookie else {}
    zone = viewer_time_zone_get(user=_User(profile), cookies=cookies)
    assert (zone.key if zone else None) == expected


def test_an_anonymous_visitor_uses_the_cookie():
    assert (
        viewer_time_zone_get(user=AnonymousUser(), cookies={"tz": "Africa/Algiers"}).key == "Africa/Algiers"
    )


def test_unknown_and_oversized_names_are_no_zone():
    assert time_zone_get("Europe/Paris").key == "Europe/Paris"
    assert time_zone_get("") is None
    assert time_zone_get("Europe/Paris" * 10) is None
    assert time_zone_get("localtime") is None  # the host's clock on some systems, not a place
    assert time_zone_get("Factory") is None


def _seen_zone(path, *, user, cookie=None, run_async=False):
    """The zone active while the view runs, and the one left active after the response."""
    seen = {}

    def view(request):
        seen["zone"] = timezone.get_current_timezone_name()
        return "response"

    async def aview(request):
        return view(request)

    request = RequestFactory().get(path)
    if cookie:
        request.COOKIES["tz"] = cookie
    request.user = user

    async def auser():
        return user

    request.auser = auser
    if run_async:
        async_to_sync(TimeZoneMiddleware(aview))(request)
    else:
        TimeZoneMiddleware(view)(request)
    return seen["zone"], timezone.get_current_timezone_name()


@pytest.mark.parametrize("run_async", [False, True])
def test_the_middleware_activates_the_zone_for_the_page_only(run_async):
    during, after = _seen_zone(
        "/dashboard/", user=_User("Europe/Paris"), cookie="Asia/Tokyo", run_async=run_async
    )
    assert (during, after) == ("Europe/Paris", "UTC")

    during, _ = _seen_zone("/dashboard/", user=_User(), cookie="Asia/Tokyo", run_async=run_async)
    assert during == "Asia/Tokyo"

    during, _ = _seen_zone("/dashboard/", user=_User(), cookie="Nowhere/Land", run_async=run_async)
    assert during == "UTC"


@pytest.mark.parametrize(
    "path", ["/api/keys", "/api/proxy/v1/chat/completions", "/payment/subscription/status", "/health"]
)
def test_apis_and_probes_stay_in_utc(path):
    during, _ = _seen_zone(path, user=_User("Europe/Paris"), cookie="Asia/Tokyo")
    assert during == "UTC"


def test_a_thread_reused_after_a_paris_page_starts_in_utc():
    timezone.activate(time_zone_get("Asia/Tokyo"))  # as if left over by an earlier request
    during, _ = _seen_zone("/dashboard/", user=_User(), cookie=None)
    assert during == "UTC"


# --- Through the whole stack -----------------------------------------------------------------


@pytest.fixture
def audited(db):
    owner = UserFactory(email="owner@example.com")
    workspace = workspace_create(user=owner, name="Acme")
    with time_machine.travel(SUMMER_NOON_UTC, tick=False):
        audit_record(action="test.known_instant", actor=owner, workspace=workspace, target="n:1")
    return owner, workspace


def _audit_row(client, workspace) -> str:
    body = client.get(f"/workspaces/{workspace.pk}/audit/").content.decode()
    return body[: body.index("test.known_instant")].rsplit("<tr>", 1)[1]


@pytest.mark.parametrize(
    ("zone", "shown"),
    [
        ("Europe/Paris", "1 Jul 2025, 14:00"),
        ("Africa/Algiers", "1 Jul 2025, 13:00"),
        ("", "1 Jul 2025, 12:00"),
    ],
)
def test_a_page_shows_a_known_instant_in_the_profile_zone(client, audited, zone, shown):
    owner, workspace = audited
    owner.time_zone = zone
    owner.save(update_fields=["time_zone"])
    client.force_login(owner)

    row = _audit_row(client, workspace)

    assert f">{shown}</time>" in row
    assert 'datetime="2025-07-01T12:00:00Z"' in row  # the machine-readable instant stays UTC
    assert f"({zone or 'UTC'})" in row  # the title names the zone


def test_a_page_follows_the_browser_cookie_when_the_profile_names_none(client, audited):
    owner, workspace = audited
    client.force_login(owner)
    client.cookies["tz"] = "Africa/Algiers"
    assert ">1 Jul 2025, 13:00</time>" in _audit_row(client, workspace)

    client.cookies["tz"] = "Europe/Nowhere"  # ignored: UTC
    assert ">1 Jul 2025, 12:00</time>" in _audit_row(client, workspace)


def test_the_api_stays_in_utc_for_a_viewer_in_paris(client, audited):
    owner, workspace = audited
    owner.time_zone = "Europe/Paris"
    owner.save(update_fields=["time_zone"])
    client.force_login(owner)
    client.cookies["tz"] = "Asia/Tokyo"

    response = client.get(f"/api/workspaces/{workspace.pk}/audit")

    assert response.status_code == 200
    event = next(e for e in response.json()["results"] if e["action"] == "test.known_instant")
    assert event["created_at"] in (
        "2025-07-01T12:00:00Z",
        "2025-07-01T12:00:00.000Z",
        "2025-07-01T12:00:00+00:00",
    )


def test_the_zone_costs_no_query(client, audited, django_assert_num_queries):
    owner, workspace = audited
    client.force_login(owner)
    client.get(f"/workspaces/{workspace.pk}/audit/")  # warm caches (content types, plans…)
    with CaptureQueriesContext(connection) as in_utc:
        client.get(f"/workspaces/{workspace.pk}/audit/")
    owner.time_zone = "Europe/Paris"
    owner.save(update_fields=["time_zone"])
    client.cookies["tz"] = "Asia/Tokyo"
    with django_assert_num_queries(len(in_utc.captured_queries)):
        client.get(f"/workspaces/{workspace.pk}/audit/")


@pytest.mark.django_db(transaction=True)
def test_the_async_stack_shows_the_profile_zone(audited):
    """Under ASGI the middleware reads the user with ``request.auser()`` (no sync query in the
    event loop) and the sync view still sees the zone."""
    owner, workspace = audited
    owner.time_zone = "Europe/Paris"
    owner.save(update_fields=["time_zone"])

    async def fetch():
        client = AsyncClient()
        await client.aforce_login(owner)
        return await client.get(f"/workspaces/{workspace.pk}/audit/")

    response = async_to_sync(fetch)()

    assert response.status_code == 200
    assert ">1 Jul 2025, 14:00</time>" in response.content.decode()
