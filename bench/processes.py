"""Start and stop the processes under test; read their CPU time and memory from /proc."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Production's worker class (bounded request heads and bodies): the bench measures what runs there.
WORKER_CLASS = "core.workers.BoundedUvicornWorker"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_json(url: str, *, data: dict | None = None, timeout: float = 5.0, headers: dict | None = None):
    """Tiny stdlib HTTP helper (control calls only; never on a measured path)."""
    body = json.dumps(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, json.loads(response.read() or b"null")


def wait_http(url: str, *, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = exc
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f}s ({last})")


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (a uvicorn supervisor's workers, their helpers …)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry))
    tree, queue = [pid], [pid]
    while queue:
        children = parents.get(queue.pop(), [])
        tree.extend(children)
        queue.extend(children)
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the given processes (seconds)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLOCK_TICKS


# Report name -> process names. Redis's is ``redis-server``; Valkey (the embedded server of
# `make test`, or a deployment's) speaks the same protocol as ``valkey-server``.
SERVICES = {"postgresql": ("postgres",), "redis": ("redis-server", "valkey-server")}


def service_pids() -> dict[str, list[int]]:
    """The processes of the PostgreSQL and Redis servers on this machine, by report name.

    Matched on the process name (``comm``): PostgreSQL's postmaster and every backend are
    ``postgres``, Redis is ``redis-server`` (Valkey: ``valkey-server``). The whole server is
    counted, so its figure is only the bench's own while nothing else uses the server.
    """
    names = {process: service for service, processes in SERVICES.items() for process in processes}
    found: dict[str, list[int]] = {service: [] for service in SERVICES}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as handle:
                comm = handle.read().strip()
        except OSError:
            continue
        if comm in names:
            found[names[comm]].append(int(entry))
    return found


def service_cpu_seconds() -> dict[str, dict[int, float]]:
    """CPU seconds of each server process, by report name and pid (see ``service_cpu_spent``)."""
    return {service: {pid: cpu_seconds([pid]) for pid in pids} for service, pids in service_pids().items()}


def service_cpu_spent(before: dict[str, dict[int, float]]) -> dict[str, float]:
    """CPU seconds each server spent since ``before`` (a ``service_cpu_seconds`` reading).

    A backend that started meanwhile counts from zero; one that ended meanwhile is missed
    (its time is gone with it): the bench's pools keep their connections, so that is rare.
    """
    after = service_cpu_seconds()
    return {
        service: sum(
            max(0.0, seconds - before.get(service, {}).get(pid, 0.0)) for pid, seconds in pids.items()
        )
        for service, pids in after.items()
    }


def rss_mb(pids: list[int]) -> float:
    total_kb = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
                    break
    return total_kb / 1024


class RssPeak:
    """``with RssPeak(pids) as peak:`` — the peak RSS (``peak.mb``) of ``pids`` while the block
    runs, sampled every half second."""

    def __init__(self, pids: list[int]):
        self.pids = pids
        self.mb = rss_mb(pids)
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            self.mb = max(self.mb, rss_mb(self.pids))

    def __enter__(self) -> RssPeak:
        self._sampler.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._sampler.join()


class Managed:
    """A child process in its own process group, stopped with SIGTERM then SIGKILL."""

    def __init__(self, name: str, command: list[str], *, env: dict, log_path: Path, cwd: Path = ROOT):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def pids(self) -> list[int]:
        return process_tree(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._log.close()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def fake_upstream_start(*, port: int, env: dict, log_dir: Path, latency_ms: float = 0) -> Managed:
    command = [
        sys.executable,
        "-m",
        "bench.fake_upstream",
        "--port",
        str(port),
        "--latency-ms",
        str(latency_ms),
    ]
    managed = Managed("fake-upstream", command, env=env, log_path=log_dir / "fake_upstream.log")
    wait_http(f"http://127.0.0.1:{port}/_stats", timeout=15, proc=managed.proc)
    return managed


def fake_upstream_configure(*, port: int, **changes) -> dict:
    _, config = http_json(f"http://127.0.0.1:{port}/_control", data=changes)
    return config


def tollgate_start(
    *,
    port: int,
    env: dict,
    log_dir: Path,
    workers: int = 2,
    application: str = "config.asgi:application",
    ready_path: str = "/health",
    name: str = "tollgate",
) -> Managed:
    """Tollgate as in production: gunicorn with production's uvicorn worker class on the ASGI
    application (or another application on the same server, for the floor)."""
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    command = [
        gunicorn,
        application,
        "-k",
        WORKER_CLASS,
        "-w",
        str(workers),
        "-b",
        f"127.0.0.1:{port}",
        "--backlog",
        "4096",
        "--timeout",
        "120",
        "--keep-alive",
        "75",
        "--log-level",
        "warning",
    ]
    managed = Managed(name, command, env=env, log_path=log_dir / f"{name}.log")
    try:
        wait_http(f"http://127.0.0.1:{port}{ready_path}", timeout=60, proc=managed.proc)
    except RuntimeError:
        tail = managed.log_tail()
        managed.stop()
        raise RuntimeError(f"{name} did not start:\n{tail}") from None
    # Workers boot lazily; wait until every worker has been forked.
    deadline = time.monotonic() + 20
    while len(managed.pids()) < workers + 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    return managed
