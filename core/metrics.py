"""Request and upstream latency histograms for ``/metrics`` (Prometheus, ``prometheus-client``).

Observed in process memory only: no database, no Redis, no lock shared between processes, so
an observation costs microseconds on the proxy's hot path. Under gunicorn every worker is a
process of its own; with ``PROMETHEUS_MULTIPROC_DIR`` set (``gunicorn.conf.py`` sets it before
the workers start, ``core.metrics_multiprocess``) each worker writes its values to its own
memory-mapped file there and a scrape sums the files of all workers. Without it (``make run``:
one uvicorn process) the values live in this process's registry.

Labels are bounded: a route is the URL pattern's template (``/api/proxy/v1/models/<path:model>``),
never the raw path; a method outside the standard ones is ``other``; providers and endpoints
come from the catalogue and the proxy's fixed endpoint names.
"""

from __future__ import annotations

import asyncio
import os
import time

from prometheus_client import CollectorRegistry, Histogram, disable_created_metrics, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from .metrics_multiprocess import MULTIPROC_DIR_ENV

# prometheus_client chose its value store (in-process, or a file per process) from this
# variable when it was imported, just above: read it now too, so both agree.
_multiproc_dir = os.environ.get(MULTIPROC_DIR_ENV, "")
if _multiproc_dir:
    os.makedirs(_multiproc_dir, exist_ok=True)  # a process started without gunicorn.conf.py

disable_created_metrics()  # per-series creation timestamps: not exported in multiprocess mode either

# Seconds, 1 ms to 60 s: a page or a gate refusal answers in milliseconds, a provider call in
# hundreds of milliseconds to tens of seconds (a long completion, a slow stream opening).
DURATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

_registry = CollectorRegistry()

REQUEST_DURATION = Histogram(
    "tollgate_request_duration_seconds",
    "Time from a request entering Django's middleware to its response (streams: to the response "
    "head), per URL pattern, method and status class.",
    ("route", "method", "status_class"),
    buckets=DURATION_BUCKETS,
    registry=_registry,
)
UPSTREAM_DURATION = Histogram(
    "tollgate_upstream_duration_seconds",
    "Duration of one provider attempt of a proxied call (streams: until the stream opened), per "
    "provider, endpoint and outcome.",
    ("provider", "endpoint", "outcome"),
    buckets=DURATION_BUCKETS,
    registry=_registry,
)

UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


# Each label set's series, once looked up: ``labels()`` validates and locks on every call, a
# dictionary read does not. As bounded as the labels themselves.
_request_series: dict[tuple[str, str, str], Histogram] = {}
_upstream_series: dict[tuple[str, str, str], Histogram] = {}


def request_observe(*, route: str, method: str, status: int, seconds: float) -> None:
    """Record one HTTP request. ``route`` must be a pattern (or ``UNMATCHED``), never a path."""
    status_class = _STATUS_CLASSES[status // 100 - 1] if 100 <= status < 600 else "other"
    key = (route, method if method in _METHODS else "other", status_class)
    series = _request_series.get(key)
    if series is None:
        series = _request_series[key] = REQUEST_DURATION.labels(*key)
    series.observe(seconds)


def upstream_observe(*, provider: str, endpoint: str, outcome: str, seconds: float) -> None:
    """Record one provider attempt (``outcome``: one of the values ``upstream_call_timed`` uses)."""
    key = (provider, endpoint, outcome)
    series = _upstream_series.get(key)
    if series is None:
        series = _upstream_series[key] = UPSTREAM_DURATION.labels(*key)
    series.observe(seconds)


def upstream_outcome(exc: BaseException | None) -> str:
    """The outcome label of a provider attempt that ended with ``exc`` (None: it answered).

    core imports no app, so the proxy's exceptions are read by their attributes: ``kind``
    ("timeout", ...) and ``status`` (the provider's HTTP status, when it sent one).
    """
    if exc is None:
        return "ok"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    if isinstance(exc, TimeoutError) or getattr(exc, "kind", None) == "timeout":
        return "timeout"
    status = getattr(exc, "status", None)
    if status == 429:
        return "rate_limited"
    if isinstance(status, int) and 400 <= status < 500:
        return "client_error"
    return "error"


class _UpstreamTimer:
    """``async with`` block timing one provider attempt; the exception leaving it (never
    swallowed) names the outcome."""

    __slots__ = ("endpoint", "provider", "started")

    def __init__(self, provider: str, endpoint: str) -> None:
        self.provider = provider
        self.endpoint = endpoint
        self.started = 0.0

    async def __aenter__(self) -> _UpstreamTimer:
        self.started = time.perf_counter()
        return self

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        upstream_observe(
            provider=self.provider,
            endpoint=self.endpoint,
            outcome=upstream_outcome(exc),
            seconds=time.perf_counter() - self.started,
        )
        return False


def upstream_call_timed(*, provider: str, endpoint: str) -> _UpstreamTimer:
    """Time a provider attempt: ``async with upstream_call_timed(provider=…, endpoint=…): …``.
    Put it outside the attempt's ``asyncio.timeout_at`` so a deadline is seen as ``timeout``."""
    return _UpstreamTimer(provider, endpoint)


def metrics_exposition_get() -> str:
    """The histograms in Prometheus text format (0.0.4), summed over every worker process when
    ``PROMETHEUS_MULTIPROC_DIR`` is set, else this process's own."""
    if _multiproc_dir:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=_multiproc_dir)
        return generate_latest(registry).decode()
    return generate_latest(_registry).decode()
