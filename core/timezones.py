"""The viewer's time zone on HTML pages.

Pages print instants in the zone of the person looking at them: the one chosen on their profile
(``accounts.User.time_zone``), else the one their browser reports in the ``tz`` cookie (set by
static/js/theme.js), else UTC. APIs, the proxy and machine endpoints stay in UTC: DRF renders
datetimes in the active zone, so activating one there would change the JSON.
"""

from __future__ import annotations

import functools
import zoneinfo
from urllib.parse import unquote

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

TZ_COOKIE = "tz"
# Longest IANA name today is 32 characters; anything much longer is not a zone.
TIME_ZONE_MAX_LENGTH = 64
# Not pages: JSON APIs (session-authenticated ones included), payment webhooks and status,
# probes and metrics, static files. The proxy's own prefixes are added from settings.
NOT_PAGE_PREFIXES = ("/api/", "/payment/", "/health", "/metrics", "/static/")


# Files some systems' zone folders hold that name no place: the host's own clock, a placeholder.
NOT_PLACES = frozenset({"localtime", "posixrules", "Factory"})


@functools.cache
def time_zone_names() -> frozenset[str]:
    """The IANA names this system knows (read once: the scan of the zone files costs ms)."""
    return frozenset(zoneinfo.available_timezones()) - NOT_PLACES


def time_zone_get(name: str | None) -> zoneinfo.ZoneInfo | None:
    """The zone called ``name``, or None for a blank or unknown name (never raises)."""
    if not name or len(name) > TIME_ZONE_MAX_LENGTH or name not in time_zone_names():
        return None
    return zoneinfo.ZoneInfo(name)


def validate_time_zone(value: str) -> None:
    """Model and form validator: blank (the browser's zone) or a known IANA name."""
    if value and time_zone_get(value) is None:
        raise ValidationError(
            "“%(value)s” is not a known time zone. Choose one from the list, such as Europe/Paris.",
            code="invalid_time_zone",
            params={"value": value[:TIME_ZONE_MAX_LENGTH]},
        )


def viewer_time_zone_get(*, user, cookies) -> zoneinfo.ZoneInfo | None:
    """The profile's zone if set and valid, else the browser's (``tz`` cookie) if valid, else
    None (UTC). A tampered cookie is ignored, not an error."""
    chosen = time_zone_get(getattr(user, "time_zone", "") or "")
    if chosen is not None:
        return chosen
    return time_zone_get(unquote(cookies.get(TZ_COOKIE, "")))


def _is_page(path: str, skipped: tuple[str, ...]) -> bool:
    return not path.startswith(skipped)


class TimeZoneMiddleware:
    """Activates the viewer's zone for the request (after ``AuthenticationMiddleware``).

    Costs nothing extra on pages: the user it reads is the one the page loads anyway (the base
    template asks ``user.is_authenticated``); anonymous visitors without a session cost no
    query; non-page URLs (``NOT_PAGE_PREFIXES`` and the proxy's fast-path prefixes) are passed
    straight through, in UTC. Sync and async capable, so the ASGI chain stays async.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.skipped = NOT_PAGE_PREFIXES + tuple(settings.API_FAST_PATH_PREFIXES)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        if not _is_page(request.path_info, self.skipped):
            return self.get_response(request)
        zone = viewer_time_zone_get(user=getattr(request, "user", None), cookies=request.COOKIES)
        return self._respond(request, zone)

    async def __acall__(self, request):
        if not _is_page(request.path_info, self.skipped):
            return await self.get_response(request)
        user = await request.auser() if hasattr(request, "auser") else None
        zone = viewer_time_zone_get(user=user, cookies=request.COOKIES)
        if zone is None:
            timezone.deactivate()
            return await self.get_response(request)
        timezone.activate(zone)
        try:
            return await self.get_response(request)
        finally:
            timezone.deactivate()

    def _respond(self, request, zone):
        if zone is None:
            timezone.deactivate()  # a thread reused from an earlier request starts in UTC
            return self.get_response(request)
        timezone.activate(zone)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
