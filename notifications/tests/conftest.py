"""Fixtures for the webhook tests: a team with an owner and a developer, an API client per
role, and a local HTTP receiver (a thread) that records what it is sent."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from rest_framework.test import APIClient

from accounts.tests.factories import UserFactory, member_add, team_workspace
from billing.services import plan_catalog_seed
from notifications.selectors import notification_settings_local_clear
from notifications.services import webhook_endpoint_create


class Receiver:
    """A tiny webhook receiver: answers ``status`` and keeps each request's headers and body."""

    def __init__(self):
        self.status = 200
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def payloads(self) -> list[dict]:
        return [json.loads(request["body"]) for request in self.requests]


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    local = Receiver()
    local.thread.start()
    yield local
    local.server.shutdown()
    local.server.server_close()


@pytest.fixture
def catalog(db):
    plan_catalog_seed()


@pytest.fixture
def team(db):
    owner = UserFactory(email="owner@hooks.example")
    workspace = team_workspace(owner=owner, name="Hooks team")
    developer = member_add(workspace, role="developer")
    return workspace, owner, developer


def client_for(user, workspace=None) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    if workspace is not None:
        client.credentials(HTTP_X_WORKSPACE=str(workspace.pk))
    return client


@pytest.fixture
def endpoint_for(secret_registry):
    """Create an endpoint through the service (its secret registered for the leak check)."""

    def make(workspace, owner, url, events):
        endpoint, secret = webhook_endpoint_create(workspace=workspace, actor=owner, url=url, events=events)
        secret_registry.add(secret)
        return endpoint, secret

    return make


@pytest.fixture(autouse=True)
def _fresh_thresholds():
    """Each test reads the thresholds it wrote (the shared cache is emptied per test; this
    process's copy is emptied here)."""
    notification_settings_local_clear()
    yield
    notification_settings_local_clear()
