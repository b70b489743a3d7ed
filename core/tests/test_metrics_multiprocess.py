"""Multiprocess metrics: worker processes write to one ``PROMETHEUS_MULTIPROC_DIR`` and a scrape
sums them (core/metrics.py); gunicorn (gunicorn.conf.py, core/metrics_multiprocess.py) gives
each run a directory without the previous run's files."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core import metrics_multiprocess
from core.metrics_multiprocess import MULTIPROC_DIR_ENV
from tests.served import BASE_DIR, gunicorn_served

REQUESTS = "tollgate_request_duration_seconds"
UPSTREAM = "tollgate_upstream_duration_seconds"
CHAT = "/api/proxy/v1/chat/completions"

# One process of its own, as a worker is: observes argv[1] requests and provider calls.
WRITER = f"""
import sys
from core.metrics import request_observe, upstream_observe
for _ in range(int(sys.argv[1])):
    request_observe(route="/health", method="GET", status=200, seconds=0.003)
    upstream_observe(provider="groq", endpoint="{CHAT}", outcome="ok", seconds=0.2)
"""
READER = "from core.metrics import metrics_exposition_get; print(metrics_exposition_get())"


def _env(directory: Path) -> dict[str, str]:
    return {**os.environ, MULTIPROC_DIR_ENV: str(directory)}


def _write(directory: Path, observations: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(observations)], cwd=BASE_DIR, env=_env(directory)
    )


def _scrape(directory: Path) -> dict[tuple, float]:
    """What /metrics would expose from ``directory``, read by a process of its own."""
    text = subprocess.run(
        [sys.executable, "-c", READER],
        cwd=BASE_DIR,
        env=_env(directory),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _total(scraped: dict[tuple, float], sample_name: str, **labels: str) -> float:
    """The sum of ``sample_name`` over the series carrying ``labels``."""
    return sum(
        value
        for (name, series), value in scraped.items()
        if name == sample_name and labels.items() <= dict(series).items()
    )


@pytest.fixture
def fresh_prepare(monkeypatch):
    """``multiprocess_dir_prepare`` as a new master process would run it (environment restored)."""
    monkeypatch.setattr(metrics_multiprocess, "_prepared", None)
    monkeypatch.setattr(metrics_multiprocess, "_created", None)
    monkeypatch.delenv(MULTIPROC_DIR_ENV, raising=False)
    return monkeypatch


def test_two_processes_writing_one_directory_are_summed(tmp_path):
    writers = [_write(tmp_path, 3), _write(tmp_path, 4)]
    assert [writer.wait(timeout=60) for writer in writers] == [0, 0]

    assert len(list(tmp_path.glob("histogram_*.db"))) == 2  # one file per process
    scraped = _scrape(tmp_path)
    health = {"route": "/health", "method": "GET", "status_class": "2xx"}
    assert _total(scraped, f"{REQUESTS}_count", **health) == 7
    assert _total(scraped, f"{REQUESTS}_bucket", le="0.005", **health) == 7
    assert _total(scraped, f"{REQUESTS}_bucket", le="0.0025", **health) == 0
    assert _total(scraped, f"{REQUESTS}_sum", **health) == pytest.approx(0.021)
    assert _total(scraped, f"{UPSTREAM}_count", provider="groq", endpoint=CHAT, outcome="ok") == 7


def test_without_a_directory_each_run_gets_a_temporary_one_removed_at_exit(fresh_prepare):
    path = metrics_multiprocess.multiprocess_dir_prepare()

    assert os.environ[MULTIPROC_DIR_ENV] == path and Path(path).is_dir()
    assert metrics_multiprocess.multiprocess_dir_prepare() == path  # a configuration reload keeps it
    metrics_multiprocess.multiprocess_dir_remove()
    assert not Path(path).exists()


def test_a_given_directory_loses_only_the_previous_runs_metric_files(fresh_prepare, tmp_path):
    (tmp_path / "histogram_4242.db").write_bytes(b"\0" * 8)
    (tmp_path / "notes.txt").write_text("not ours")
    fresh_prepare.setenv(MULTIPROC_DIR_ENV, str(tmp_path))

    assert metrics_multiprocess.multiprocess_dir_prepare() == str(tmp_path)

    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]
    metrics_multiprocess.multiprocess_dir_remove()
    assert tmp_path.is_dir()  # a directory it was given is never removed


@pytest.mark.django_db(transaction=True)
def test_gunicorn_workers_are_summed_and_a_previous_run_is_not(tmp_path, monkeypatch):
    metrics_dir = tmp_path / "metrics"
    assert _write(metrics_dir, 50).wait(timeout=60) == 0  # a previous run's worker
    [stale] = metrics_dir.glob("histogram_*.db")
    monkeypatch.setenv(MULTIPROC_DIR_ENV, str(metrics_dir))

    sent = 0
    lock = threading.Lock()
    with gunicorn_served(workers=2) as (url, process):
        assert not stale.exists()
        workers = subprocess.run(
            ["pgrep", "-P", str(process.pid)], capture_output=True, text=True
        ).stdout.split()
        assert len(workers) == 2
        wanted = {metrics_dir / f"histogram_{pid}.db" for pid in workers}

        def get_favicon():  # a route of its own: the server's readiness probe asked /health
            nonlocal sent
            for _ in range(25):  # a new connection each time: the kernel spreads them over workers
                httpx.get(f"{url}/favicon.ico", timeout=10)
                with lock:
                    sent += 1

        for _round in range(20):
            threads = [threading.Thread(target=get_favicon) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if all(path.exists() for path in wanted):
                break
        assert all(path.exists() for path in wanted), "one worker served nothing"
    output = process.stdout.read().decode()

    # The workers have exited (their counts stay); the previous run's 50 are not among them.
    scraped = _scrape(metrics_dir)
    assert _total(scraped, f"{REQUESTS}_count", route="/favicon.ico", method="GET") == sent
    assert 1 <= _total(scraped, f"{REQUESTS}_count", route="/health") < 50  # the readiness probes
    assert "Traceback" not in output
