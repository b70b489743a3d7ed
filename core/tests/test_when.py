"""``|when``: relative text for the last 24 hours, else the one date format in the viewer's
zone; the ``datetime`` attribute always UTC. The clock is passed in (``now``) or frozen."""

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.template import Context, Template
from django.utils import timezone

from core.templatetags.when import when_html
from core.timezones import time_zone_get

NOW = datetime(2026, 12, 6, 13, 58, 7, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ago", "text"),
    [
        (timedelta(seconds=0), "just now"),
        (timedelta(seconds=59), "just now"),
        (timedelta(seconds=-30), "just now"),  # a clock a little ahead of ours
        (timedelta(minutes=1), "1 min ago"),
        (timedelta(minutes=5, seconds=40), "5 min ago"),
        (timedelta(minutes=59, seconds=59), "59 min ago"),
        (timedelta(hours=1), "1 h ago"),
        (timedelta(hours=3, minutes=59), "3 h ago"),
        (timedelta(hours=23, minutes=59), "23 h ago"),
    ],
)
def test_recent_instants_read_as_relative_text(ago, text):
    html = when_html(NOW - ago, now=NOW)
    assert html.endswith(f">{text}</time>")


def test_a_day_old_instant_shows_the_date_in_the_viewers_zone():
    value = NOW - timedelta(hours=24)  # 5 Dec 2026, 13:58:07 UTC
    with timezone.override(time_zone_get("Asia/Tokyo")):
        html = when_html(value, now=NOW)
    assert html == (
        '<time datetime="2026-12-05T13:58:07Z" title="Saturday 5 Dec 2026, 22:58:07 (Asia/Tokyo)">'
        "5 Dec 2026, 22:58</time>"
    )


def test_the_future_beyond_a_minute_is_a_date_not_a_countdown():
    html = when_html(NOW + timedelta(hours=2), now=NOW)
    assert html.endswith(">6 Dec 2026, 15:58</time>")


def test_recent_rows_keep_the_exact_local_time_in_the_title():
    with timezone.override(time_zone_get("Europe/Paris")):
        html = when_html(NOW - timedelta(minutes=5), now=NOW)
    assert 'datetime="2026-12-06T13:53:07Z"' in html
    assert 'title="Sunday 6 Dec 2026, 14:53:07 (Europe/Paris)"' in html
    assert ">5 min ago</time>" in html


def test_the_date_form_drops_the_time_and_crosses_midnight_in_the_zone():
    value = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
    with timezone.override(time_zone_get("Europe/Paris")):
        assert when_html(value, now=NOW, date_only=True).endswith(">1 Dec 2026</time>")
    assert when_html(value, now=NOW, date_only=True).endswith(">30 Nov 2026</time>")  # UTC


def test_days_nones_and_naive_values():
    assert when_html(date(2026, 1, 31), now=NOW) == '<time datetime="2026-01-31">31 Jan 2026</time>'
    assert when_html(None, now=NOW) == ""
    naive = datetime(2026, 1, 2, 3, 4)  # what a raw SQL row could hand back: UTC
    assert 'datetime="2026-01-02T03:04:00Z"' in when_html(naive, now=NOW)


@pytest.mark.parametrize(
    ("zone", "shown"), [("Europe/Paris", "1 Jul 2025, 14:00"), ("Africa/Algiers", "1 Jul 2025, 13:00")]
)
def test_the_filter_in_a_template(zone, shown):
    template = Template("{% load when %}{{ at|when }} · {{ at|when:'date' }} · {{ missing|when }}")
    at = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)
    with time_machine.travel(NOW, tick=False), timezone.override(time_zone_get(zone)):
        out = template.render(Context({"at": at, "missing": None}))
    assert f">{shown}</time> · " in out
    assert ">1 Jul 2025</time> · " in out
    assert out.endswith(" · ")


def test_the_filter_uses_the_frozen_clock_for_recent_rows():
    template = Template("{% load when %}{{ at|when }}")
    with time_machine.travel(NOW, tick=False):
        out = template.render(Context({"at": NOW - timedelta(hours=3)}))
    assert out.endswith(">3 h ago</time>")
