"""Request and upstream latency histograms (core/metrics.py, core/request_metrics.py): every
request is counted under its URL pattern, never its raw path, and a proxied call under its
provider. The histograms live in this test process (no PROMETHEUS_MULTIPROC_DIR here), so
each test compares the exposition before and after what it does."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.metrics import metrics_exposition_get, upstream_outcome
from proxy.catalog import proxy_catalog_seed
from proxy.router import router_reseed
from proxy.selectors import catalog_invalidate
from proxy.tests.factories import key_for, plan_configure
from proxy.upstreams import UpstreamClientError, UpstreamFailure

pytestmark = pytest.mark.django_db

REQUESTS = "tollgate_request_duration_seconds"
UPSTREAM = "tollgate_upstream_duration_seconds"
CHAT = "/api/proxy/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 50}


def samples(name: str) -> dict[tuple, float]:
    """``{(sample name, sorted labels): value}`` of one histogram, as a scrape reads it."""
    found = {}
    for family in text_string_to_metric_families(metrics_exposition_get()):
        if family.name == name:
            for sample in family.samples:
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def count(name: str, **labels: str) -> float:
    return samples(name).get((f"{name}_count", tuple(sorted(labels.items()))), 0.0)


def label_values(name: str, label: str) -> set[str]:
    return {dict(labels)[label] for _sample, labels in samples(name) if label in dict(labels)}


@pytest.fixture
def sandbox_caller(settings, api_client):
    """A key on a plan routed to groq with no provider key anywhere: the sandbox answers."""
    settings.SANDBOX_PROVIDER_ENABLED = True
    settings.PROXY_ROUTER_SEED = 1234
    settings.DAILY_BUDGET_USD = 50
    router_reseed(1234)
    catalog_invalidate()
    proxy_catalog_seed()
    plan_configure(weights={"groq": 100})
    _user, plaintext = key_for()
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    yield api_client
    catalog_invalidate()


def test_a_page_is_counted_under_its_route(client):
    before = count(REQUESTS, route="/docs/", method="GET", status_class="2xx")

    assert client.get("/docs/").status_code == 200

    assert count(REQUESTS, route="/docs/", method="GET", status_class="2xx") == before + 1
    buckets = samples(REQUESTS)
    [duration] = [
        value
        for (sample, labels), value in buckets.items()
        if sample == f"{REQUESTS}_sum" and dict(labels)["route"] == "/docs/"
    ]
    assert 0 < duration < 60


@pytest.mark.django_db(transaction=True)  # the proxy's gate reads keys over its own connections
def test_a_proxied_call_is_counted_under_its_route_and_its_provider(sandbox_caller):
    before_request = count(REQUESTS, route=CHAT, method="POST", status_class="2xx")
    before_upstream = count(UPSTREAM, provider="sandbox", endpoint=CHAT, outcome="ok")

    response = sandbox_caller.post(CHAT, BODY, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["provider"] == "sandbox"
    assert count(REQUESTS, route=CHAT, method="POST", status_class="2xx") == before_request + 1
    assert count(UPSTREAM, provider="sandbox", endpoint=CHAT, outcome="ok") == before_upstream + 1


def test_a_refused_call_has_no_upstream_duration(client):
    before = samples(UPSTREAM)

    response = client.post(CHAT, BODY, content_type="application/json")  # no key

    assert response.status_code == 401
    assert count(REQUESTS, route=CHAT, method="POST", status_class="4xx") >= 1
    assert samples(UPSTREAM) == before


def test_unknown_paths_and_path_arguments_add_no_label_values(client):
    client.get("/docs/")  # at least one known route
    routes_before = label_values(REQUESTS, "route")
    unmatched_before = count(REQUESTS, route="unmatched", method="GET", status_class="4xx")

    for _ in range(3):
        token = uuid.uuid4().hex
        assert client.get(f"/no-such-page-{token}").status_code == 404
        assert client.get(f"/api/no-such-endpoint-{token}").status_code == 404
        assert client.get(f"/api/proxy/v1/models/model-{token}").status_code == 401  # no key

    routes_after = label_values(REQUESTS, "route")
    assert routes_after - routes_before <= {"unmatched", "/api/proxy/v1/models/<path:model>"}
    assert not any("no-such" in route or "model-" in route for route in routes_after)
    assert count(REQUESTS, route="unmatched", method="GET", status_class="4xx") == unmatched_before + 6
    assert count(REQUESTS, route="/api/proxy/v1/models/<path:model>", method="GET", status_class="4xx") >= 3


def test_an_unknown_method_is_counted_as_other(client):
    before = label_values(REQUESTS, "method")

    client.generic("BREW", "/docs/")
    client.generic(f"X{uuid.uuid4().hex[:8].upper()}", "/docs/")

    assert label_values(REQUESTS, "method") - before <= {"other"}
    assert count(REQUESTS, route="/docs/", method="other", status_class="4xx") >= 2


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (None, "ok"),
        (UpstreamFailure("timeout", "Provider timed out."), "timeout"),
        (TimeoutError(), "timeout"),
        (UpstreamFailure("status", "Provider answered 429.", status=429), "rate_limited"),
        (UpstreamFailure("status", "Provider answered 503.", status=503), "error"),
        (UpstreamFailure("connect", "Could not connect to the provider."), "error"),
        (UpstreamClientError(400, "Bad model."), "client_error"),
    ],
)
def test_the_outcome_of_a_provider_attempt_follows_the_proxys_exceptions(exc, outcome):
    assert upstream_outcome(exc) == outcome
