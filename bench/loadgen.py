"""Load generators: ``wrk`` (plain calls) and an asyncio client (streams, time to first token).

wrk runs are summarised by :class:`RunStats`; interleaved runs of the same target are merged
with ``RunStats.merge`` so that drift on a noisy machine hits direct and proxy runs alike.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

LUA_SCRIPT = Path(__file__).with_name("chat.lua")

CHAT_BODY = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "Give me one sentence about toll gates on old roads."},
    ],
    "max_tokens": 64,
}


def wrk_ensure() -> str:
    """Path to ``wrk``; installs Debian's package when missing (the bench runs as root)."""
    path = shutil.which("wrk")
    if path:
        return path
    print("wrk not found: installing it with apt-get", flush=True)
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True)
        subprocess.run(install, check=True, capture_output=True)
    path = shutil.which("wrk")
    if not path:
        raise RuntimeError("wrk is not installed and apt-get could not install it")
    return path


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


@dataclass
class RunStats:
    """One or more merged wrk runs against one target."""

    requests: int = 0  # completed responses (any status)
    duration_s: float = 0.0
    non2xx: int = 0
    socket_errors: int = 0  # connect + read + write
    timeouts: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    # (latency_us, weight) samples: wrk's 1 000 quantiles, each weighing requests / 1 000.
    samples: list[tuple[float, float]] = field(default_factory=list)
    max_us: float = 0.0
    # Answers completed in each wall-clock second (epoch seconds) of a single run, and when it
    # started: what ``steady_rps`` reads. Empty for merged runs.
    per_second: dict[int, int] = field(default_factory=dict)
    started_s: int = 0

    @property
    def ok(self) -> int:
        return self.requests - self.non2xx

    @property
    def errors(self) -> int:
        return self.non2xx + self.socket_errors + self.timeouts

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    def steady_rps(self, *, skip_s: float) -> float | None:
        """Answers per second once the run is steady: the full seconds after the first
        ``skip_s`` and before the last second of the window.

        A closed-loop run whose calls take L seconds completes nothing in its first L seconds
        and leaves up to one call per connection unfinished at its end, so ``rps`` (completed
        ÷ window) stays below connections ÷ L even with no proxy at all; this rate does not.
        None when the window has fewer than three steady seconds.
        """
        if not self.per_second or not self.started_s:
            return None
        first = self.started_s + math.ceil(skip_s)
        end = self.started_s + round(self.duration_s) - 1  # the window's last second is partial
        if end - first < 3:
            return None
        return sum(self.per_second.get(second, 0) for second in range(first, end)) / (end - first)

    def percentile_ms(self, p: float) -> float:
        if not self.samples:
            return 0.0
        ordered = sorted(self.samples)
        total = sum(weight for _, weight in ordered)
        target = p / 100 * total
        running = 0.0
        for value, weight in ordered:
            running += weight
            if running >= target:
                return value / 1000
        return ordered[-1][0] / 1000

    @classmethod
    def from_wrk_json(cls, data: dict) -> RunStats:
        quantiles = data.get("quantiles_us") or []
        weight = data["requests"] / len(quantiles) if quantiles else 0
        errors = data["errors"]
        return cls(
            requests=data["requests"],
            duration_s=data["duration_us"] / 1e6,
            non2xx=data["non2xx"],
            socket_errors=errors["connect"] + errors["read"] + errors["write"],
            timeouts=errors["timeout"],
            statuses={str(k): v for k, v in (data.get("statuses") or {}).items()},
            samples=[(float(q), weight) for q in quantiles] if weight else [],
            max_us=float(data.get("max_us") or 0),
            per_second={int(second): count for second, count in (data.get("per_second") or {}).items()},
            started_s=int(data.get("started_s") or 0),
        )

    @classmethod
    def merge(cls, runs: list[RunStats]) -> RunStats:
        merged = cls()
        for run in runs:
            merged.requests += run.requests
            merged.duration_s += run.duration_s
            merged.non2xx += run.non2xx
            merged.socket_errors += run.socket_errors
            merged.timeouts += run.timeouts
            for code, count in run.statuses.items():
                merged.statuses[code] = merged.statuses.get(code, 0) + count
            merged.samples.extend(run.samples)
            merged.max_us = max(merged.max_us, run.max_us)
        return merged

    def summary(self) -> dict:
        return {
            "p50_ms": round(self.percentile_ms(50), 3),
            "p90_ms": round(self.percentile_ms(90), 3),
            "p99_ms": round(self.percentile_ms(99), 3),
            "rps": round(self.rps, 1),
            "requests": self.requests,
            "errors": self.errors,
            "non2xx": self.non2xx,
            "socket_errors": self.socket_errors,
            "timeouts": self.timeouts,
        }


def wrk_run(
    *,
    url: str,
    connections: int,
    duration_s: float,
    auth: str = "",
    body: dict | None = None,
    headers: dict[str, str] | None = None,
    threads: int | None = None,
    timeout_s: float = 10.0,
) -> RunStats:
    """One wrk run of POSTs to ``url`` (``headers``: sent beside the bearer ``auth``, e.g. an
    ``x-api-key``). Raises when wrk fails or prints no result."""
    wrk = wrk_ensure()
    threads = threads or (1 if connections <= 64 else 2)
    threads = max(1, min(threads, connections))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(body or CHAT_BODY, handle)
        body_file = handle.name
    env = {
        **os.environ,
        "BENCH_BODY_FILE": body_file,
        "BENCH_AUTH": auth,
        "BENCH_HEADERS": "\n".join(f"{name}: {value}" for name, value in (headers or {}).items()),
    }
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={timeout_s:g}s",
        "-s",
        str(LUA_SCRIPT),
        url,
    ]
    try:
        result = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=duration_s + timeout_s + 30
        )
    finally:
        os.unlink(body_file)
    for line in result.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return RunStats.from_wrk_json(json.loads(line.split(" ", 1)[1]))
    raise RuntimeError(f"wrk printed no result (exit {result.returncode}): {result.stderr[-500:]}")


# --- asyncio client: streams and time to first token ---------------------------------------------


@dataclass
class StreamStats:
    count: int = 0
    completed: int = 0  # streams that reached ``data: [DONE]`` with a 200
    errors: int = 0
    ttft_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)  # non-200 answers

    def ttft_percentile(self, p: float) -> float:
        return percentile(sorted(self.ttft_ms), p)

    @classmethod
    def merge(cls, runs: list[StreamStats]) -> StreamStats:
        merged = cls()
        for run in runs:
            merged.count += run.count
            merged.completed += run.completed
            merged.errors += run.errors
            merged.ttft_ms.extend(run.ttft_ms)
            merged.total_ms.extend(run.total_ms)
            for code, count in run.statuses.items():
                merged.statuses[code] = merged.statuses.get(code, 0) + count
        return merged


async def _stream_connect(host: str, port: int):
    return await asyncio.open_connection(host, port)


async def _one_stream(conn, host: str, path: str, payload: bytes, auth: str, start: asyncio.Event, stats):
    """One SSE call on an already open connection, over raw asyncio streams.

    A hand-rolled HTTP/1.1 client costs far less per stream than httpx, so 200 simultaneous
    streams measure the server, not the client (the direct runs show the client's share).
    """
    reader, writer = conn
    # Headers as the openai SDK sends them (it asks for JSON even when streaming).
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json\r\nContent-Length: {len(payload)}\r\n"
        + (f"Authorization: Bearer {auth}\r\n" if auth else "")
        + "\r\n"
    ).encode()
    await start.wait()
    began = time.perf_counter()
    first = None
    done = False
    try:
        writer.write(head + payload)
        status_line = await reader.readline()
        status = int(status_line.split(b" ", 2)[1]) if status_line else 0
        while (await reader.readline()) not in (b"\r\n", b""):
            pass  # response headers
        if status != 200:
            stats.errors += 1
            stats.statuses[str(status)] = stats.statuses.get(str(status), 0) + 1
            return
        while True:
            line = await reader.readline()
            if not line:
                break
            if line.startswith(b"data:"):
                if first is None:
                    first = time.perf_counter()
                if line.strip() == b"data: [DONE]":
                    done = True
            elif done and line == b"0\r\n":
                await reader.readline()  # the blank line that ends the chunked body
                break
    except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
        stats.errors += 1
        return
    finally:
        writer.close()
    if first is not None:
        stats.ttft_ms.append((first - began) * 1000)
    stats.total_ms.append((time.perf_counter() - began) * 1000)
    if done:
        stats.completed += 1
    else:
        stats.errors += 1


async def streams_run_async(*, url: str, count: int, auth: str = "", body: dict | None = None) -> StreamStats:
    """Open ``count`` connections, then start every stream at the same instant.

    TTFT is the time from sending the request to the first SSE event of the answer.
    """
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    payload = json.dumps(
        {**(body or CHAT_BODY), "stream": True, "stream_options": {"include_usage": True}}
    ).encode()
    stats = StreamStats(count=count)
    conns = await asyncio.gather(*(_stream_connect(host, port) for _ in range(count)), return_exceptions=True)
    start = asyncio.Event()
    tasks = []
    for conn in conns:
        if isinstance(conn, BaseException):
            stats.errors += 1
            continue
        tasks.append(
            asyncio.create_task(_one_stream(conn, f"{host}:{port}", parts.path, payload, auth, start, stats))
        )
    await asyncio.sleep(0.05)
    start.set()
    await asyncio.gather(*tasks)
    return stats


def streams_run(*, url: str, count: int, auth: str = "", body: dict | None = None) -> StreamStats:
    return asyncio.run(streams_run_async(url=url, count=count, auth=auth, body=body))


async def streams_sustained_run_async(
    *,
    url: str,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    auth: str = "",
    body: dict | None = None,
) -> tuple[StreamStats, StreamStats]:
    """``concurrency`` streams kept open for ``warmup_s + duration_s``: each client starts its
    next stream, on a new connection, as soon as its previous one ends. The first arrivals are
    spread over ``warmup_s`` (seeded, so runs are alike) and only the streams that start after
    it are measured. Returns (measured, all streams): the second is for the accounting check.
    """
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    payload = json.dumps(
        {**(body or CHAT_BODY), "stream": True, "stream_options": {"include_usage": True}}
    ).encode()
    measured, warmup = StreamStats(), StreamStats()
    go = asyncio.Event()
    go.set()
    began = time.perf_counter()
    measure_from, stop_at = began + warmup_s, began + warmup_s + duration_s
    rng = random.Random(concurrency)
    delays = [rng.random() for _ in range(concurrency)]

    async def client(delay: float):
        await asyncio.sleep(warmup_s * delay)
        while (now := time.perf_counter()) < stop_at:
            stats = measured if now >= measure_from else warmup
            stats.count += 1
            try:
                conn = await _stream_connect(host, port)
            except OSError:
                stats.errors += 1
                await asyncio.sleep(0.01)
                continue
            await _one_stream(conn, f"{host}:{port}", parts.path, payload, auth, go, stats)

    await asyncio.gather(*(client(delay) for delay in delays))
    return measured, StreamStats.merge([measured, warmup])


def streams_sustained_run(**kwargs) -> tuple[StreamStats, StreamStats]:
    return asyncio.run(streams_sustained_run_async(**kwargs))


async def calls_run_async(
    *,
    url: str,
    total: int,
    concurrency: int,
    auth: str = "",
    body: dict | None = None,
    headers: dict[str, str] | None = None,
) -> RunStats:
    """A small closed-loop run with httpx (the smoke test's load when wrk is absent)."""
    headers = {**({"Authorization": f"Bearer {auth}"} if auth else {}), **(headers or {})}
    latencies: list[float] = []
    stats = RunStats()
    remaining = total
    began = time.perf_counter()

    async with httpx.AsyncClient(timeout=30.0) as client:

        async def worker():
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                t0 = time.perf_counter()
                try:
                    response = await client.post(url, json=body or CHAT_BODY, headers=headers)
                except httpx.TimeoutException:
                    stats.timeouts += 1
                    continue
                except httpx.TransportError:
                    stats.socket_errors += 1
                    continue
                latencies.append((time.perf_counter() - t0) * 1e6)
                stats.requests += 1
                if not 200 <= response.status_code < 300:
                    stats.non2xx += 1
                    code = str(response.status_code)
                    stats.statuses[code] = stats.statuses.get(code, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    stats.duration_s = time.perf_counter() - began
    stats.samples = [(value, 1.0) for value in latencies]
    stats.max_us = max(latencies, default=0.0)
    return stats


def calls_run(
    *,
    url: str,
    total: int,
    concurrency: int,
    auth: str = "",
    body: dict | None = None,
    headers: dict[str, str] | None = None,
) -> RunStats:
    return asyncio.run(
        calls_run_async(url=url, total=total, concurrency=concurrency, auth=auth, body=body, headers=headers)
    )
