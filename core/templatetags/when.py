"""``{{ value|when }}``: one way to print an instant on a page.

Renders ``<time datetime="2026-12-06T13:58:07Z" title="Sunday 6 Dec 2026, 14:58:07 (Europe/Paris)">5 min
ago</time>``: relative text for the last 24 hours ("just now", "5 min ago", "3 h ago"), else the one
date format (``settings.DATETIME_FORMAT``, or ``DATE_FORMAT`` with ``|when:"date"``) in the
viewer's zone (``core.timezones``); the machine-readable attribute is always UTC.

The formats are read from settings on purpose: Django's ``|date`` without a format would pick the
active language's (``N j, Y, P`` in English), and pages must not show several. A French page
(core/i18n.py) gets the same layout with French month names, lower case with their abbreviation
point ("6 déc. 2026, 14:05"), and translated relative text ("il y a 5 min").
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from django import template
from django.conf import settings
from django.utils import dateformat, timezone
from django.utils.html import format_html
from django.utils.translation import get_language, gettext

register = template.Library()

TITLE_FORMAT = "l j M Y, H:i:s"
RELATIVE_WINDOW = timedelta(hours=24)
CLOCK_SKEW = timedelta(seconds=60)  # a moment "in the future" by this much is still "just now"
# (date, date and time, title) for languages whose months read better another way than "Dec".
LANGUAGE_FORMATS = {"fr": ("j N Y", "j N Y, H:i", "l j N Y, H:i:s")}


def _formats() -> tuple[str, str, str]:
    """The active language's (date, date and time, title) formats; English's are the settings'."""
    formats = LANGUAGE_FORMATS.get((get_language() or "en").split("-")[0])
    return formats or (settings.DATE_FORMAT, settings.DATETIME_FORMAT, TITLE_FORMAT)


def relative_text(value: datetime, *, now: datetime) -> str | None:
    """ "just now", "N min ago" or "N h ago" for an instant in the last 24 hours, else None."""
    age = now - value
    if age < -CLOCK_SKEW or age >= RELATIVE_WINDOW:
        return None
    if age < timedelta(minutes=1):
        return gettext("just now")
    if age < timedelta(hours=1):
        return gettext("%(minutes)d min ago") % {"minutes": age // timedelta(minutes=1)}
    return gettext("%(hours)d h ago") % {"hours": age // timedelta(hours=1)}


def when_html(value, *, now: datetime | None = None, date_only: bool = False) -> str:
    """The ``<time>`` element for ``value`` (a datetime, a date, or None: empty text)."""
    if value in (None, ""):
        return ""
    date_format, datetime_format, title_format = _formats()
    if not isinstance(value, datetime):
        if isinstance(value, date):  # a calendar day has no zone and no "ago"
            return format_html(
                '<time datetime="{}">{}</time>',
                value.isoformat(),
                dateformat.format(value, date_format),
            )
        return str(value)
    if timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)  # the database's datetimes are UTC
    local = timezone.localtime(value)
    zone_name = timezone.get_current_timezone_name()
    title = f"{dateformat.format(local, title_format)} ({zone_name})"
    text = relative_text(value, now=now or timezone.now())
    if text is None:
        text = dateformat.format(local, date_format if date_only else datetime_format)
    iso = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return format_html('<time datetime="{}" title="{}">{}</time>', iso, title, text)


@register.filter(is_safe=True)
def when(value, arg: str = ""):
    """``{{ value|when }}``, or ``{{ value|when:"date" }}`` for a day without its time."""
    return when_html(value, date_only=arg == "date")
