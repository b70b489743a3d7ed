"""The Activity page in a real browser (Playwright, Debian's chromium, the live test server):
filter to the failed calls, open one call's detail, come back and download the filtered CSV."""

from __future__ import annotations

import csv
import io
import uuid

import pytest

from dashboards.tests.factories import UsageEventFactory, UserFactory

from .test_browser import browser, login, page, shoot, site  # noqa: F401 (the shared browser fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_filter_open_a_failed_call_and_download_the_filtered_csv(page):  # noqa: F811
    user = UserFactory(email="activity@example.com")
    workspace = user.personal_workspace
    for _ in range(3):
        UsageEventFactory(workspace=workspace, request_id=f"req-ok-{uuid.uuid4().hex[:8]}")
    failed = UsageEventFactory(
        workspace=workspace,
        status_code=502,
        error_code="upstream_error",
        provider="openai",
        model="gpt-4o",
        request_id="req-failed-42",
    )
    login(page, "activity@example.com")

    page.goto("/activity/")
    assert page.locator("#activity-calls tbody tr[data-call-id]").count() == 4
    page.select_option("#af-status", "error")
    page.locator("#activity-filter button[type=submit]").click()
    page.wait_for_url("**/activity/?*status=error*")
    rows = page.locator("#activity-calls tbody tr[data-call-id]")
    assert rows.count() == 1
    assert rows.first.get_attribute("data-call-id") == str(failed.call_id)
    shoot(page, "activity-failed")

    rows.first.locator("a").first.click()
    page.wait_for_url(f"**/activity/{failed.call_id}/")
    detail = page.locator("main").inner_text()
    assert "req-failed-42" in detail and "upstream_error" in detail
    page.go_back()
    page.wait_for_url("**/activity/?*status=error*")

    with page.expect_download() as download_info:
        page.locator("#activity-export").click()
    content = open(download_info.value.path(), encoding="utf-8").read()  # noqa: SIM115
    lines = list(csv.DictReader(io.StringIO(content)))
    assert [(line["request_id"], line["status_code"]) for line in lines] == [("req-failed-42", "502")]
