"""The API guide's copy-paste examples run as printed, against a live Tollgate offline (the
sandbox), with the reader's own key pasted in."""

import contextlib
import html
import io
import re

import pytest
from django.test import Client

from ..factories import plan_configure

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = ["ex-python", "ex-responses", "ex-anthropic", "ex-embeddings", "ex-langchain"]


@pytest.fixture
def guide(caller, settings, live_asgi):
    settings.SANDBOX_PROVIDER_ENABLED = True
    settings.SITE_URL = live_asgi
    plan_configure(weights={"groq": 100})
    user, plaintext, _client = caller
    pages = Client()
    pages.force_login(user)
    body = pages.get("/docs/").content.decode()
    return body, plaintext


@pytest.mark.parametrize("example", EXAMPLES)
def test_the_guide_example_runs_as_printed(guide, example):
    body, plaintext = guide
    printed = re.search(rf'<pre id="{example}"[^>]*>(.*?)</pre>', body, re.S)
    assert printed, f"{example} is not on the page"
    code = html.unescape(printed.group(1))
    code = re.sub(r'"sk_agentai_[A-Za-z0-9]*…"', f'"{plaintext}"', code)
    assert plaintext in code

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, example, "exec"), {})  # the page's own example, on purpose

    assert out.getvalue().strip()
