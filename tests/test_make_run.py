"""`make run PORT=…` as a newcomer runs it, end to end.

A fresh copy of the checkout (its tracked files; the virtualenv is shared so nothing is
installed), nothing set: the command starts its own PostgreSQL and Valkey, migrates, seeds and
serves uvicorn on the port. The official ``openai`` SDK streams a chat completion through it
(the sandbox provider answers) and the usage log and quota agree with the usage it reported.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import openai
import pytest

from devservers.state import free_port

ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 240


def _fresh_copy(destination: Path) -> None:
    """The checkout's tracked files (mtimes kept, so make sees the virtualenv as up to date)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = ROOT / name.decode()
        if source.is_file():
            target = destination / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (destination / ".venv").symlink_to(ROOT / ".venv")


def _newcomer_env(port: int) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "SITE_URL"}
        and not key.startswith(("PYTEST", "CELERY"))
    }
    return env


@pytest.fixture
def make_run(tmp_path):
    # Not under pytest's tmp_path (private to root): as root the embedded PostgreSQL runs as its
    # own user, which must reach the copy's files.
    home = Path(tempfile.mkdtemp(prefix="tollgate-make-run-"))
    home.chmod(0o755)
    checkout = home / "checkout"
    _fresh_copy(checkout)
    port = free_port()
    log = (tmp_path / "make-run.log").open("wb")
    process = subprocess.Popen(
        ["make", "run", f"PORT={port}"],
        cwd=checkout,
        env=_newcomer_env(port),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_SECONDS
    try:
        while True:
            if process.poll() is not None:
                output = (tmp_path / "make-run.log").read_text()
                pytest.fail(f"make run exited {process.returncode}:\n{output[-4000:]}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"make run did not serve:\n{(tmp_path / 'make-run.log').read_text()[-4000:]}")
            time.sleep(0.5)
        yield base, checkout
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C, as a person stops it
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()
        shutil.rmtree(home, ignore_errors=True)


def test_make_run_serves_a_streamed_chat_with_the_official_sdk(make_run):
    base, checkout = make_run
    account = httpx.post(
        f"{base}/api/auth/register",
        json={"email": "newcomer@example.com", "password": "a-long-password-0123"},
        timeout=10,
    )
    assert account.status_code == 201, account.text
    token = account.json()["token"]
    created = httpx.post(
        f"{base}/api/keys", json={"name": "laptop"}, headers={"Authorization": f"Token {token}"}, timeout=10
    )
    assert created.status_code == 201, created.text
    key = created.json()["key"]

    client = openai.OpenAI(base_url=f"{base}/api/proxy/v1", api_key=key, max_retries=0)
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Bonjour !"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage is not None:
            usage = chunk.usage
    assert text
    assert usage is not None and usage.total_tokens > 0

    bearer = {"Authorization": f"Bearer {key}"}
    books = httpx.get(f"{base}/api/proxy/usage", headers=bearer, timeout=10).json()
    assert [row["tokensUsed"] for row in books["recentUsage"]] == [usage.total_tokens]
    assert books["recentUsage"][0]["statusCode"] == 200
    assert books["quota"]["deepseek"]["used"] == usage.total_tokens
    # The embedded servers live in the copy, not in the checkout the suite runs from.
    assert (checkout / ".local" / "postgres").is_dir()


def test_make_run_on_another_port_completes_the_simulated_checkout(make_run):
    """SITE_URL follows PORT: the checkout page, its return links and the plan all work there."""
    base, _checkout = make_run
    account = httpx.post(
        f"{base}/api/auth/register",
        json={"email": "buyer@example.com", "password": "a-long-password-0123"},
        timeout=10,
    )
    assert account.status_code == 201, account.text
    auth = {"Authorization": f"Token {account.json()['token']}"}
    started = httpx.post(
        f"{base}/api/billing/checkout",
        json={"planId": "pro", "successUrl": f"{base}/billing/success/", "cancelUrl": f"{base}/pricing/"},
        headers=auth,
        timeout=10,
    )
    assert started.status_code == 200, started.text
    page_url = started.json()["checkoutUrl"]
    assert page_url.startswith(f"{base}/"), page_url  # not the default port

    with httpx.Client(timeout=10) as browser:
        page = browser.get(page_url)
        assert page.status_code == 200
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        paid = browser.post(
            page_url, data={"action": "pay", "csrfmiddlewaretoken": token}, headers={"Referer": page_url}
        )
        assert paid.status_code == 302, paid.text[:500]
        assert paid.headers["location"].startswith(f"{base}/billing/success/")

    subscription = httpx.get(f"{base}/api/billing/subscription", headers=auth, timeout=10).json()
    assert (subscription["plan"]["code"], subscription["status"]) == ("pro", "active")
