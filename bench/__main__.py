"""``python -m bench`` (``make bench``): measure what Tollgate adds to every proxied call.

Steps: bench database + Redis db → migrate, seed, bench tenant → fake upstream → Tollgate as in
production (gunicorn + production's uvicorn worker class, DEBUG off, PostgreSQL, Redis) →
interleaved wrk runs (direct, proxy, direct, proxy …) at concurrency 1/16/64 → in-flight steps
with a 2 s upstream → 200 concurrent streams → accounting check after every run → results.json +
results.md. ``--peer litellm``: the same phases through LiteLLM's proxy too, alternated, and the
ratios (``bench/peer.py``). Exits 1 when accounting is wrong, 2 when the bench itself could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

from . import loadgen, peer, processes, report
from .processes import ROOT, WORKER_CLASS

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/tollgate_bench"
DASHBOARDS_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/tollgate_bench_dashboards"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/7"
PROXY_PATH = "/api/proxy/v1/chat/completions"
DIRECT_PATH = "/v1/chat/completions"
INFLIGHT_STEPS = (100, 250, 500, 750, 1000)
PEER_INFLIGHT = 500


def bench_env(*, database_url: str, redis_url: str, upstream_port: int) -> dict:
    """Production settings for the bench: DEBUG off, real services, every provider → fake upstream."""
    upstream = f"http://127.0.0.1:{upstream_port}/v1"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVIDER_")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_ENV="production",
        DEBUG="False",
        # Fixed, bench-only secrets: stored provider keys must decrypt across bench runs.
        SECRET_KEY="bench-only-secret-key-never-used-in-production-0123456789abcdef",
        SALT_KEY="bench-only-salt",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="False",
        EMAIL_ALLOW_CONSOLE="1",  # the bench sends no mail; production refuses the console backend
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        CACHE_KEY_PREFIX="tollgate-bench",
        DAILY_BUDGET_USD=os.environ.get("BENCH_DAILY_BUDGET_USD", "1000"),
        INSTANTLY_API_URL=upstream,
        TOLLGATE_BENCH="1",
        PYTHONUNBUFFERED="1",
    )
    for provider in ("openai", "anthropic", "google", "mistral", "groq", "openrouter", "deepseek"):
        env[f"PROVIDER_{provider.upper()}_BASE_URL"] = upstream
    return env


def database_ensure(database_url: str) -> None:
    """Create the bench database if it does not exist (never drops anything)."""
    import psycopg

    base, name = database_url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def database_vacuum(database_url: str) -> None:
    """VACUUM ANALYZE the bench database before a run.

    The bench database is kept between runs, and a PostgreSQL with autovacuum off (as on this
    machine) never prunes the dead versions every call leaves on the counter rows or analyzes
    the tables: later runs would measure that bloat. In production autovacuum does this.
    """
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")


def redis_flush(redis_url: str) -> None:
    import redis

    redis.Redis.from_url(redis_url).flushdb()


def manage(env: dict, *args: str, timeout: float = 600) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"manage.py {' '.join(args)} failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}"
        )
    return result.stdout


def django_setup(env: dict) -> None:
    os.environ.update(env)
    import logging

    import django

    django.setup()
    # The bench's own HTTP clients must not log every request (it would cost the measurement).
    logging.getLogger("httpx").setLevel(logging.WARNING)


class Bench:
    """Holds the running processes and the accumulating accounting expectations."""

    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.log_dir = Path(tempfile.mkdtemp(prefix="tollgate-bench-"))
        self.upstream_port = processes.free_port()
        self.tollgate_port = processes.free_port()
        self.env = bench_env(
            database_url=args.database_url, redis_url=args.redis_url, upstream_port=self.upstream_port
        )
        self.upstream = None
        self.tollgate = None
        self.celery = None
        self.tenant = None
        self.client_ok_min = 0
        self.client_ok_max = 0
        self.accounting_ok = True
        self.accounting_problems: list[str] = []
        self.accounting_runs: list[dict] = []
        self.last_db_transactions = 0
        self.last_service_cpu: dict[str, float] = {}

    # --- lifecycle ------------------------------------------------------------------------------
    def prepare(self) -> None:
        step("database + Redis")
        database_ensure(self.args.database_url)
        redis_flush(self.args.redis_url)
        step("migrate + seed")
        manage(self.env, "migrate", "--noinput")
        manage(self.env, "seed_catalog")
        database_vacuum(self.args.database_url)
        django_setup(self.env)
        from bench.setup import bench_tenant_create

        self.tenant = bench_tenant_create()
        step(f"bench tenant: user {self.tenant.user_id}, key {self.tenant.api_key[:14]}…")

    def start(self) -> None:
        step("fake upstream")
        self.upstream = processes.fake_upstream_start(
            port=self.upstream_port, env=self.env, log_dir=self.log_dir
        )
        if self.args.celery:
            celery = str(Path(sys.executable).with_name("celery"))
            self.celery = processes.Managed(
                "celery",
                [celery, "-A", "config", "worker", "--concurrency", "1", "--loglevel", "WARNING"],
                env=self.env,
                log_path=self.log_dir / "celery.log",
            )
        step(f"Tollgate: gunicorn -k {WORKER_CLASS} -w {self.args.workers}")
        self.tollgate = processes.tollgate_start(
            port=self.tollgate_port, env=self.env, log_dir=self.log_dir, workers=self.args.workers
        )

    def stop(self) -> None:
        for managed in (self.tollgate, self.celery, self.upstream):
            if managed is not None:
                managed.stop()

    # --- helpers ---------------------------------------------------------------------------------
    @property
    def direct_url(self) -> str:
        return f"http://127.0.0.1:{self.upstream_port}{DIRECT_PATH}"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.tollgate_port}{PROXY_PATH}"

    def upstream_set(self, **changes) -> None:
        processes.fake_upstream_configure(port=self.upstream_port, **changes)

    def proxy_probe(self) -> None:
        """One call through Tollgate must succeed before anything is measured."""
        status, body = -1, None
        try:
            status, body = processes.http_json(
                self.proxy_url,
                data=loadgen.CHAT_BODY,
                headers={"Authorization": f"Bearer {self.tenant.api_key}"},
                timeout=15,
            )
        except Exception as exc:  # urllib raises HTTPError for non-2xx; report what came back
            status = getattr(exc, "code", -1)
            body = exc.read() if hasattr(exc, "read") else str(exc)
        if status != 200:
            raise RuntimeError(
                f"a probe call through Tollgate answered {status}: {str(body)[:500]}\n"
                f"--- Tollgate log ---\n{self.tollgate.log_tail()}"
            )
        self.client_ok_min += 1
        self.client_ok_max += 1

    def db_transactions(self) -> int:
        """Transactions committed or rolled back in the bench database so far (PostgreSQL stats)."""
        import psycopg

        name = self.args.database_url.rsplit("/", 1)[1]
        with psycopg.connect(self.args.database_url, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (name,)
            ).fetchone()
        return int(row[0]) if row else 0

    def proxy_run(self, *, connections: int, duration_s: float, timeout_s: float = 10.0):
        """A wrk run through Tollgate, with the CPU time and peak RSS of its processes."""
        pids = self.tollgate.pids()
        self.last_db_transactions = -self.db_transactions()
        services_before = processes.service_cpu_seconds()
        cpu_before = processes.cpu_seconds(pids)
        peak = {"rss": processes.rss_mb(pids)}
        stop = threading.Event()

        def sample():
            while not stop.wait(0.5):
                peak["rss"] = max(peak["rss"], processes.rss_mb(pids))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            stats = loadgen.wrk_run(
                url=self.proxy_url,
                connections=connections,
                duration_s=duration_s,
                auth=self.tenant.api_key,
                timeout_s=timeout_s,
            )
        finally:
            stop.set()
            sampler.join()
        cpu = processes.cpu_seconds(pids) - cpu_before
        self.last_service_cpu = processes.service_cpu_spent(services_before)
        time.sleep(0.6)  # PostgreSQL flushes backend statistics at most every 0.5 s
        self.last_db_transactions += self.db_transactions()
        self.client_ok_min += stats.ok
        # Calls cut off when wrk stops (or timed out client-side) may still succeed server-side.
        self.client_ok_max += stats.ok + connections + stats.timeouts
        return stats, cpu, peak["rss"]

    def profile_start(self, *, duration_s: float) -> None:
        """Sample every Tollgate worker with py-spy during the next run (flame graphs in the log dir).

        py-spy is a profiling tool, not a dependency: ``pip install py-spy`` to use ``--profile``.
        """
        py_spy = Path(sys.executable).with_name("py-spy")
        if not py_spy.exists():
            print("    --profile needs py-spy in the virtualenv (pip install py-spy)", flush=True)
            return
        for pid in self.tollgate.pids()[1:]:
            out = self.log_dir / f"profile-worker-{pid}"
            for fmt, suffix in (("flamegraph", ".svg"), ("raw", ".txt")):
                subprocess.Popen(
                    [
                        str(py_spy),
                        "record",
                        "--pid",
                        str(pid),
                        "--duration",
                        str(max(1, int(duration_s) - 1)),
                        "--rate",
                        "200",
                        "--format",
                        fmt,
                        "--output",
                        f"{out}{suffix}",
                        "--nonblocking",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            print(f"    profiling worker {pid} → {out}.svg / .txt", flush=True)

    def direct_run(self, *, connections: int, duration_s: float) -> loadgen.RunStats:
        return loadgen.wrk_run(url=self.direct_url, connections=connections, duration_s=duration_s)

    def check(self, label: str) -> dict:
        from bench.accounting import accounting_check

        result = accounting_check(
            user_id=self.tenant.user_id, client_ok_min=self.client_ok_min, client_ok_max=self.client_ok_max
        )
        entry = {"after": label, **result.as_dict()}
        self.accounting_runs.append(entry)
        if not result.ok:
            self.accounting_ok = False
            self.accounting_problems.extend(f"after {label}: {p}" for p in result.problems)
            # Kept with the run's logs, even under --no-write, so a wrong run can be examined.
            with open(self.log_dir / "accounting-problems.json", "a") as problems:
                problems.write(json.dumps(entry, default=str) + "\n")
        print(
            f"    accounting after {label}: {'ok' if result.ok else 'WRONG'} "
            f"({result.figures.get('ok_events')} successful events, {result.figures.get('tokens')} tokens)"
            + ("" if result.ok else "\n      " + "\n      ".join(result.problems)),
            flush=True,
        )
        return entry

    # --- phases ----------------------------------------------------------------------------------
    def instant_levels(self) -> tuple[int, ...]:
        """The instant phase's concurrencies: ``--quick`` runs at 2 unless ``--concurrency`` says."""
        if self.quick and not self.args.concurrency_given:
            return (2,)
        return tuple(self.args.concurrency)

    def phase_instant(self) -> list[dict]:
        self.upstream_set(latency_ms=0, chunk_interval_ms=0)
        duration = self.args.duration
        reps = 1 if self.quick else self.args.reps
        levels = self.instant_levels()
        step("warm-up")
        self.direct_run(connections=16, duration_s=1)
        self.proxy_run(connections=16, duration_s=1 if self.quick else 3)
        rows = []
        for concurrency in levels:
            direct_runs, proxy_runs, cpu_total, transactions = [], [], 0.0, 0
            service_cpu = dict.fromkeys(processes.SERVICES, 0.0)
            for rep in range(reps):
                direct_runs.append(self.direct_run(connections=concurrency, duration_s=duration))
                if rep == 0 and concurrency == self.args.profile:
                    self.profile_start(duration_s=duration)
                stats, cpu, _ = self.proxy_run(connections=concurrency, duration_s=duration)
                proxy_runs.append(stats)
                cpu_total += cpu
                transactions += self.last_db_transactions
                for service, seconds in self.last_service_cpu.items():
                    service_cpu[service] += seconds
            direct = loadgen.RunStats.merge(direct_runs)
            proxy = loadgen.RunStats.merge(proxy_runs)
            d, p = direct.summary(), proxy.summary()
            p["cpu_ms_per_request"] = round(cpu_total * 1000 / proxy.requests, 3) if proxy.requests else None
            # The servers' side of each call (the whole servers: see processes.service_pids).
            for service, seconds in service_cpu.items():
                p[f"{service}_cpu_ms_per_request"] = (
                    round(seconds * 1000 / proxy.requests, 3) if proxy.requests else None
                )
            # Each transaction is at least one fsync'ed commit when it writes (≈2.5 ms here).
            p["db_transactions_per_request"] = (
                round(transactions / proxy.requests, 2) if proxy.requests else None
            )
            p["statuses"] = proxy.statuses
            row = {
                "concurrency": concurrency,
                "direct": d,
                "proxy": p,
                "added_p50_ms": round(p["p50_ms"] - d["p50_ms"], 3),
                "added_p99_ms": round(p["p99_ms"] - d["p99_ms"], 3),
            }
            rows.append(row)
            print(
                f"  c={concurrency:<3} direct p50 {d['p50_ms']:.2f} p99 {d['p99_ms']:.2f} ms "
                f"{d['rps']:.0f} rps | "
                f"proxy p50 {p['p50_ms']:.2f} p99 {p['p99_ms']:.2f} ms {p['rps']:.0f} rps, "
                f"{p['errors']} errors, {p['cpu_ms_per_request']} CPU ms/req "
                f"(PostgreSQL {p['postgresql_cpu_ms_per_request']}, Redis {p['redis_cpu_ms_per_request']}), "
                f"{p['db_transactions_per_request']} DB transactions/req",
                flush=True,
            )
            self.check(f"instant c={concurrency}")
        return rows

    def phase_inflight(self) -> dict:
        latency_s = 0.5 if self.quick else 2.0
        self.upstream_set(latency_ms=latency_s * 1000)
        steps_ = (20,) if self.quick else tuple(self.args.inflight_steps)
        duration = 3 if self.quick else self.args.inflight_duration
        results, best = [], None
        for connections in steps_:
            # The same wrk run straight at the upstream first: what a proxy adding nothing would
            # score in this window (wrk counts only completed calls, so a window of a few
            # upstream latencies scores below connections / latency even with no proxy at all;
            # the steady rate leaves out the first waves and the unfinished end).
            direct_stats = self.direct_run(connections=connections, duration_s=duration)
            direct = direct_stats.summary()
            time.sleep(latency_s + 0.5)
            stats, _, rss = self.proxy_run(
                connections=connections, duration_s=duration, timeout_s=latency_s * 4
            )
            summary = stats.summary()
            held = stats.errors == 0 and stats.requests > 0
            skip_s = 2 * latency_s + 1
            steady = stats.steady_rps(skip_s=skip_s)
            direct_steady = direct_stats.steady_rps(skip_s=skip_s)
            entry = {
                "connections": connections,
                "rps": summary["rps"],
                "p50_ms": summary["p50_ms"],
                "p99_ms": summary["p99_ms"],
                "errors": stats.errors,
                "rss_mb": round(rss, 1),
                "held": held,
                "statuses": stats.statuses,
                "direct_rps": direct["rps"],
                "direct_p50_ms": direct["p50_ms"],
                "steady_rps": None if steady is None else round(steady, 1),
                "direct_steady_rps": None if direct_steady is None else round(direct_steady, 1),
            }
            results.append(entry)
            print(
                f"  in flight {connections:>4}: {summary['rps']:.0f} rps (steady {entry['steady_rps']}), "
                f"p50 {summary['p50_ms']:.0f} ms, {stats.errors} errors, RSS {rss:.0f} MB | "
                f"direct {direct['rps']:.0f} rps (steady {entry['direct_steady_rps']}), "
                f"p50 {direct['p50_ms']:.0f} ms",
                flush=True,
            )
            if held:
                best = entry
            # Let the abandoned calls finish before the next step or the check.
            time.sleep(latency_s + 0.5)
            if not held:
                break
        self.upstream_set(latency_ms=0)
        self.check("in-flight")
        chosen = best or results[0]
        return {
            "upstream_latency_s": latency_s,
            "connections": best["connections"] if best else 0,
            "rps": chosen["rps"],
            "p50_ms": chosen["p50_ms"],
            "errors": chosen["errors"],
            "rss_mb": chosen["rss_mb"],
            "direct_rps": chosen["direct_rps"],
            "direct_p50_ms": chosen["direct_p50_ms"],
            "steady_rps": chosen["steady_rps"],
            "direct_steady_rps": chosen["direct_steady_rps"],
            "duration_s": duration,
            "steps": results,
        }

    def phase_streams(self) -> dict:
        count = 10 if self.quick else self.args.streams
        first_token_ms = 200
        self.upstream_set(latency_ms=first_token_ms, chunk_interval_ms=10)
        rounds = 1 if self.quick else 3
        if not self.quick:
            # As the instant phase does: a fresh worker's first burst (its first gate per key, new
            # connections) is not the steady state, and a streams-only run would measure it.
            warmup = loadgen.streams_run(url=self.proxy_url, count=count, auth=self.tenant.api_key)
            self.client_ok_min += warmup.completed
            self.client_ok_max += warmup.count
        direct_runs, proxy_runs = [], []
        for _ in range(rounds):
            direct_runs.append(loadgen.streams_run(url=self.direct_url, count=count))
            stats = loadgen.streams_run(url=self.proxy_url, count=count, auth=self.tenant.api_key)
            proxy_runs.append(stats)
            self.client_ok_min += stats.completed
            self.client_ok_max += stats.count
        sustained = self.streams_sustained(count=count)
        self.upstream_set(latency_ms=0, chunk_interval_ms=0)
        direct = loadgen.StreamStats.merge(direct_runs)
        proxy = loadgen.StreamStats.merge(proxy_runs)
        result = {
            "count": count,
            "rounds": rounds,
            "upstream_latency_ms": first_token_ms,
            "direct_ttft_p50_ms": round(direct.ttft_percentile(50), 2),
            "direct_ttft_p99_ms": round(direct.ttft_percentile(99), 2),
            "proxy_ttft_p50_ms": round(proxy.ttft_percentile(50), 2),
            "proxy_ttft_p99_ms": round(proxy.ttft_percentile(99), 2),
            "added_ttft_p99_ms": _added_ttft_p99_ms(direct=direct, proxy=proxy),
            "errors": proxy.errors,
            "error_statuses": proxy.statuses,
            "direct_errors": direct.errors,
            "sustained": sustained,
        }
        print(
            f"  {count} streams: TTFT p99 direct {result['direct_ttft_p99_ms']:.1f} ms, "
            f"proxy {result['proxy_ttft_p99_ms']:.1f} ms, added {result['added_ttft_p99_ms']} ms, "
            f"{proxy.errors} errors",
            flush=True,
        )
        print(
            f"  {count} streams kept open for {sustained['duration_s']} s: TTFT p99 direct "
            f"{sustained['direct_ttft_p99_ms']} ms, proxy {sustained['proxy_ttft_p99_ms']} ms, "
            f"added {sustained['added_ttft_p99_ms']} ms ({sustained['streams']} streams measured, "
            f"{sustained['errors']} errors)",
            flush=True,
        )
        self.check("streams")
        return result

    def streams_sustained(self, *, count: int) -> dict:
        """``count`` streams kept open (each client starts its next stream when one ends), the
        steady case, beside the burst above (every stream started in the same instant)."""
        duration, warmup = (1.0, 0.5) if self.quick else (8.0, 2.0)
        direct_runs, proxy_runs = [], []
        for _ in range(1 if self.quick else 2):
            measured, _all = loadgen.streams_sustained_run(
                url=self.direct_url, concurrency=count, duration_s=duration, warmup_s=warmup
            )
            direct_runs.append(measured)
            measured, everything = loadgen.streams_sustained_run(
                url=self.proxy_url,
                concurrency=count,
                duration_s=duration,
                warmup_s=warmup,
                auth=self.tenant.api_key,
            )
            proxy_runs.append(measured)
            self.client_ok_min += everything.completed
            self.client_ok_max += everything.count
        direct = loadgen.StreamStats.merge(direct_runs)
        proxy = loadgen.StreamStats.merge(proxy_runs)
        return {
            "concurrency": count,
            "duration_s": duration,
            "warmup_s": warmup,
            "rounds": len(proxy_runs),
            "streams": proxy.count,
            "direct_ttft_p99_ms": round(direct.ttft_percentile(99), 2) if direct.ttft_ms else None,
            "proxy_ttft_p50_ms": round(proxy.ttft_percentile(50), 2) if proxy.ttft_ms else None,
            "proxy_ttft_p99_ms": round(proxy.ttft_percentile(99), 2) if proxy.ttft_ms else None,
            "added_ttft_p99_ms": _added_ttft_p99_ms(direct=direct, proxy=proxy),
            "errors": proxy.errors,
            "error_statuses": proxy.statuses,
        }


FLOORS = {
    # kind: (ASGI application, settings module, readiness path)
    "bare": ("bench.floor:application", "config.settings", "/"),
    "django": ("config.asgi:application", "bench.floor_settings", "/health"),
}


class FloorBench(Bench):
    """The same load against a relay on Tollgate's serving stack, with no key and no billing.

    ``bare``: ``bench.floor``, a plain ASGI relay, the least any Tollgate on this stack (gunicorn
    + uvicorn workers, aiohttp, these two cores) can add. ``django``: ``bench.floor_django``,
    Tollgate's Django and DRF around the same relay. Against Tollgate's own figures they tell
    the stack's share of a target from the framework's and from billing's (docs/speed.md).
    """

    def __init__(self, args, *, kind: str):
        super().__init__(args)
        self.kind = kind
        self.env["FLOOR_UPSTREAM_URL"] = f"http://127.0.0.1:{self.upstream_port}{DIRECT_PATH}"
        self.env["DJANGO_SETTINGS_MODULE"] = FLOORS[kind][1]
        self.tenant = SimpleNamespace(api_key="sk_agentai_floor", user_id=None)

    def prepare(self) -> None:
        step(f"floor ({self.kind}): a relay with no key, no limits and no books")
        if self.kind == "django":
            database_ensure(self.args.database_url)  # Django's /health asks the database

    def start(self) -> None:
        application, _settings, ready_path = FLOORS[self.kind]
        step("fake upstream")
        self.upstream = processes.fake_upstream_start(
            port=self.upstream_port, env=self.env, log_dir=self.log_dir
        )
        step(f"floor relay {application}: gunicorn -k {WORKER_CLASS} -w {self.args.workers}")
        self.tollgate = processes.tollgate_start(
            port=self.tollgate_port,
            env=self.env,
            log_dir=self.log_dir,
            workers=self.args.workers,
            application=application,
            ready_path=ready_path,
        )

    def proxy_probe(self) -> None:
        status, _ = processes.http_json(self.proxy_url, data=loadgen.CHAT_BODY, timeout=15)
        if status != 200:
            raise RuntimeError(f"a probe call through the {self.kind} floor answered {status}")

    def db_transactions(self) -> int:
        return 0

    def check(self, label: str) -> dict:
        return {"after": label, "skipped": "a floor relay keeps no books"}


def floor_run(args) -> dict:
    """Each floor in turn, the phases Tollgate's targets are read on (instant, streams)."""
    floor = {}
    for kind in FLOORS:
        bench = FloorBench(args, kind=kind)
        try:
            bench.prepare()
            bench.start()
            bench.proxy_probe()
            floor[kind] = {}
            if not args.skip_instant:
                step(f"floor ({kind}), instant upstream: interleaved direct/relay runs")
                floor[kind]["instant"] = bench.phase_instant()
            if not args.skip_streams:
                step(f"floor ({kind}), streams")
                floor[kind]["streams"] = bench.phase_streams()
        finally:
            bench.stop()
            print(f"logs ({kind}): {bench.log_dir}", flush=True)
    return floor


def _added_ttft_p99_ms(*, direct: loadgen.StreamStats, proxy: loadgen.StreamStats) -> float | None:
    """What Tollgate adds to the p99 time to first token; None unless both sides got a token."""
    if not (proxy.ttft_ms and direct.ttft_ms):
        return None
    return round(proxy.ttft_percentile(99) - direct.ttft_percentile(99), 2)


def step(message: str) -> None:
    print(f"[bench {datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return ""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke): concurrency 2, a few seconds")
    parser.add_argument("--skip-instant", action="store_true")
    parser.add_argument("--skip-inflight", action="store_true")
    parser.add_argument("--skip-streams", action="store_true")
    parser.add_argument("--dashboards", action="store_true", help="only the dashboards bench (1 M events)")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="the same load against relays on Tollgate's stack with no key and no billing (the floors)",
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="usage events for --dashboards")
    parser.add_argument(
        "--peer",
        choices=peer.PEERS,
        default=None,
        help="also measure this gateway, alternated with Tollgate in the same run, and report the "
        "ratios (litellm: LiteLLM's proxy at a pinned version; stub: a relay speaking its protocol, "
        "for the tests)",
    )
    parser.add_argument(
        "--concurrency",
        type=lambda text: [int(part) for part in text.split(",")],
        default=None,
        help="instant-run concurrencies, comma-separated (default 1,16,64)",
    )
    parser.add_argument("--duration", type=float, default=5, help="seconds per instant wrk run")
    parser.add_argument("--reps", type=int, default=2, help="direct/proxy pairs per concurrency")
    parser.add_argument(
        "--inflight-steps",
        type=lambda text: [int(part) for part in text.split(",")],
        default=None,
        help="in-flight connection counts, comma-separated (default 100,250,500,750,1000; 500 with --peer)",
    )
    parser.add_argument("--inflight-duration", type=float, default=30, help="seconds per in-flight wrk run")
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("BENCH_WORKERS", "2")))
    parser.add_argument(
        "--profile",
        nargs="?",
        type=int,
        const=64,
        default=None,
        metavar="CONCURRENCY",
        help="py-spy the workers during the first instant run at CONCURRENCY (1, 16 or 64; default 64)",
    )
    parser.add_argument("--no-celery", dest="celery", action="store_false", help="do not start a worker")
    parser.add_argument("--no-write", action="store_true", help="do not write results.json / results.md")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL"))
    args = parser.parse_args(argv)
    args.concurrency_given = args.concurrency is not None
    if args.concurrency is None:
        args.concurrency = [1, 16, 64]
    if args.inflight_steps is None:
        # Against a peer, the step the issue compares at (each step runs three times there).
        args.inflight_steps = [PEER_INFLIGHT] if args.peer else list(INFLIGHT_STEPS)
    if not args.database_url:
        # A million synthetic events live in their own database, away from hot-path accounting.
        name = DASHBOARDS_DATABASE_URL if args.dashboards else DEFAULT_DATABASE_URL
        args.database_url = _on_server_of(os.environ.get("DATABASE_URL"), default=name)
    if not args.redis_url:
        args.redis_url = _on_server_of(os.environ.get("REDIS_URL"), default=DEFAULT_REDIS_URL)
    return args


def _on_server_of(url: str | None, *, default: str) -> str:
    """``default``'s database (its last path segment) on the server ``url`` names, if any.

    Under ``python -m devservers`` (``make bench``) ``DATABASE_URL`` / ``REDIS_URL`` name the
    embedded PostgreSQL and Valkey on ports of their own: the bench uses its own database
    (``tollgate_bench``) and Redis db (``/7``) on those servers, never the project's.
    """
    if not url:
        return default
    return f"{url.rsplit('/', 1)[0]}/{default.rsplit('/', 1)[1]}"


def _meta_finish(meta: dict, *, began: float) -> None:
    elapsed = time.monotonic() - began
    meta["elapsed_s"] = round(elapsed)
    meta["summary"] = f"{datetime.now(UTC):%Y-%m-%d}, commit {meta['commit']}, {elapsed:.0f} s"


def floor_main(args, *, results: dict, began: float) -> int:
    """``--floor``: no books to check; the figures sit beside the hot-path ones in results.json."""
    try:
        results["floor"] = floor_run(args)
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        print(f"bench could not run: {exc}", file=sys.stderr)
        return 2
    results["floor"]["meta"] = results.pop("meta")
    _meta_finish(results["floor"]["meta"], began=began)
    if not args.no_write:
        report.results_write(results)
    print("\n" + report.floor_markdown(results["floor"]))
    return 0


def peer_main(args, *, results: dict, began: float) -> int:
    """``--peer``: Tollgate and the peer (and the bare floor, for streams) in the same run, the
    ratios under ``peer`` in results.json; the hot-path figures of ``make bench`` are kept."""
    bench = Bench(args)
    try:
        bench.prepare()
        figures = peer_run(bench)
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        print(f"bench could not run: {exc}\nlogs: {bench.log_dir}", file=sys.stderr)
        return 2
    _meta_finish(results["meta"], began=began)
    figures["meta"] = results.pop("meta")
    results["peer"] = figures
    if not args.no_write:
        report.results_write(results)
    print("\n" + report.peer_markdown(figures))
    print(f"logs: {bench.log_dir}")
    return 0 if bench.accounting_ok else 1


def peer_run(bench: Bench) -> dict:
    """Start Tollgate (on the prepared database and tenant), the peer and the bare floor relay,
    run the alternated phases, stop them all; the figures, ratios, goals and accounting verdict."""
    runner = None
    try:
        bench.start()
        bench.proxy_probe()
        application, _settings, ready_path = FLOORS["bare"]
        runner = peer.runner_start(bench, floor_application=application, floor_ready_path=ready_path)
        figures = runner.run()
    finally:
        if runner is not None:
            runner.stop()
        bench.stop()
    figures["accounting_ok"] = bench.accounting_ok
    figures["accounting_problems"] = bench.accounting_problems
    return figures


def main(argv=None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    loadgen.wrk_ensure()
    results: dict = {
        "meta": {
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": git_commit(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
            "server": f"gunicorn + uvicorn workers x{args.workers}, DEBUG off, PostgreSQL, Redis",
            "quick": args.quick,
        }
    }
    if args.floor:
        return floor_main(args, results=results, began=began)
    if args.peer:
        return peer_main(args, results=results, began=began)
    bench = Bench(args)
    try:
        bench.prepare()
        if args.dashboards:
            from bench.dashboards import dashboards_bench

            bench.start()
            results["dashboards"] = dashboards_bench(bench, events=args.events)
        else:
            bench.start()
            bench.proxy_probe()
            if not args.skip_instant:
                step("instant upstream: interleaved direct/proxy runs")
                results["instant"] = bench.phase_instant()
            if not args.skip_inflight:
                step("in flight: 2 s upstream")
                results["inflight"] = bench.phase_inflight()
            if not args.skip_streams:
                step("streams")
                results["streams"] = bench.phase_streams()
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        print(f"bench could not run: {exc}\nlogs: {bench.log_dir}", file=sys.stderr)
        return 2
    finally:
        bench.stop()
    _meta_finish(results["meta"], began=began)
    if args.dashboards:
        # A dashboards run checks no accounting: keep the hot-path run's verdict and meta.
        results["dashboards_meta"] = results.pop("meta")
    else:
        results["accounting_ok"] = bench.accounting_ok
        results["accounting_problems"] = bench.accounting_problems
        results["accounting_runs"] = bench.accounting_runs
    table = report.results_markdown(results) if args.no_write else report.results_write(results)
    print("\n" + table)
    print(f"logs: {bench.log_dir}")
    return 0 if bench.accounting_ok else 1


if __name__ == "__main__":
    sys.exit(main())
