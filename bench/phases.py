"""The bench against Tollgate: the processes it runs, the measured phases (instant upstream, calls
in flight, streams) and the accounting check after each."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from . import loadgen, processes
from .environment import bench_env, database_ensure, database_vacuum, django_setup, manage, redis_flush, step
from .processes import WORKER_CLASS
from .routes import ROUTE_LEVELS, ROUTES, Route

PROXY_PATH = "/api/proxy/v1/chat/completions"
DIRECT_PATH = "/v1/chat/completions"


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
        self.client_ok_min = 0  # every endpoint's calls, chat's and the routes' alike
        self.client_ok_max = 0
        # The API-surface routes (bench.routes), each on its own: [ok min, ok max] by endpoint,
        # and the usage the fake upstream reported for one call of each (their bodies are fixed).
        self.route_ok: dict[str, list[int]] = {}
        self.route_usage: dict[str, dict] = {}
        self.measure_routes = True  # a floor relay serves chat completions only
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
        from bench.setup import bench_tenant_create  # noqa: PLC0415 (Django setup must run first: the line above)

        self.tenant = bench_tenant_create()
        step(
            f"bench tenant: workspace {self.tenant.workspace_id} (user {self.tenant.user_id}), "
            f"key {self.tenant.api_key[:14]}…"
        )

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
        name = self.args.database_url.rsplit("/", 1)[1]
        with psycopg.connect(self.args.database_url, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (name,)
            ).fetchone()
        return int(row[0]) if row else 0

    def route_probe(self, route: Route) -> None:
        """One call of ``route`` through Tollgate must succeed before it is measured; the usage
        the fake upstream reported for it is what every later call of the route must be billed."""
        url = f"http://127.0.0.1:{self.tollgate_port}{route.path}"
        try:
            status, body = processes.http_json(
                url, data=route.body, headers=route.headers(self.tenant.api_key), timeout=15
            )
        except Exception as exc:  # urllib raises HTTPError for non-2xx; report what came back
            status = getattr(exc, "code", -1)
            body = exc.read() if hasattr(exc, "read") else str(exc)
        if status != 200:
            raise RuntimeError(
                f"a probe call of {route.path} through Tollgate answered {status}: {str(body)[:500]}\n"
                f"--- Tollgate log ---\n{self.tollgate.log_tail()}"
            )
        _, stats = processes.http_json(f"http://127.0.0.1:{self.upstream_port}/_stats")
        self.route_usage[route.path] = stats["last_usage"]
        self.client_ok_min += 1
        self.client_ok_max += 1
        counted = self.route_ok.setdefault(route.path, [0, 0])
        counted[0] += 1
        counted[1] += 1

    def proxy_run(
        self, *, connections: int, duration_s: float, timeout_s: float = 10.0, route: Route | None = None
    ):
        """A wrk run through Tollgate (chat completions, or ``route``), with the CPU time and
        peak RSS of its processes."""
        pids = self.tollgate.pids()
        self.last_db_transactions = -self.db_transactions()
        services_before = processes.service_cpu_seconds()
        cpu_before = processes.cpu_seconds(pids)
        with processes.RssPeak(pids) as peak:
            if route is None:
                url, body, (auth, headers) = self.proxy_url, None, (self.tenant.api_key, None)
            else:
                url = f"http://127.0.0.1:{self.tollgate_port}{route.path}"
                body, (auth, headers) = route.body, route.auth(self.tenant.api_key)
            stats = loadgen.wrk_run(
                url=url,
                connections=connections,
                duration_s=duration_s,
                auth=auth,
                body=body,
                headers=headers,
                timeout_s=timeout_s,
            )
        cpu = processes.cpu_seconds(pids) - cpu_before
        self.last_service_cpu = processes.service_cpu_spent(services_before)
        time.sleep(0.6)  # PostgreSQL flushes backend statistics at most every 0.5 s
        self.last_db_transactions += self.db_transactions()
        self.client_ok_min += stats.ok
        # Calls cut off when wrk stops (or timed out client-side) may still succeed server-side.
        self.client_ok_max += stats.ok + connections + stats.timeouts
        if route is not None:
            counted = self.route_ok.setdefault(route.path, [0, 0])
            counted[0] += stats.ok
            counted[1] += stats.ok + connections + stats.timeouts
        return stats, cpu, peak.mb

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

    def direct_run(
        self, *, connections: int, duration_s: float, route: Route | None = None
    ) -> loadgen.RunStats:
        """A wrk run straight at the fake upstream: the call Tollgate makes for chat or ``route``."""
        if route is None:
            return loadgen.wrk_run(url=self.direct_url, connections=connections, duration_s=duration_s)
        return loadgen.wrk_run(
            url=f"http://127.0.0.1:{self.upstream_port}{route.direct_path}",
            connections=connections,
            duration_s=duration_s,
            body=route.direct_body,
        )

    def check(self, label: str) -> dict:
        from bench.accounting import accounting_check  # noqa: PLC0415 (Django setup must run first: prepare does it)

        endpoints = {
            path: {"ok_min": low, "ok_max": high, "usage": self.route_usage.get(path)}
            for path, (low, high) in self.route_ok.items()
        }
        result = accounting_check(
            workspace_id=self.tenant.workspace_id,
            client_ok_min=self.client_ok_min,
            client_ok_max=self.client_ok_max,
            endpoints=endpoints,
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
            f"({result.figures.get('ok_events')} successful events, {result.figures.get('tokens')} tokens"
            + "".join(
                f"; {path.rsplit('/', 1)[1]} {figures['ok_events']} events, {figures['tokens']} tokens"
                for path, figures in result.figures.get("endpoints", {}).items()
            )
            + ")"
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

    def route_levels(self, levels: tuple[int, ...]) -> tuple[int, ...]:
        """Where the API-surface routes are measured: c=1 and c=64 (``ROUTE_LEVELS``), or the one
        level of ``--quick``; never through a floor relay (it serves chat completions only)."""
        if not self.measure_routes:
            return ()
        if self.quick and not self.args.concurrency_given:
            return levels
        return tuple(level for level in levels if level in ROUTE_LEVELS)

    def phase_instant(self) -> list[dict]:
        self.upstream_set(latency_ms=0, chunk_interval_ms=0)
        duration = self.args.duration
        reps = 1 if self.quick else self.args.reps
        levels = self.instant_levels()
        route_levels = self.route_levels(levels)
        step("warm-up")
        self.direct_run(connections=16, duration_s=1)
        self.proxy_run(connections=16, duration_s=1 if self.quick else 3)
        for route in ROUTES if route_levels else ():
            self.route_probe(route)
            if not self.quick:
                self.proxy_run(connections=16, duration_s=1, route=route)
        rows = []
        for concurrency in levels:
            row = {
                "concurrency": concurrency,
                **self.instant_measure(concurrency, duration=duration, reps=reps),
            }
            rows.append(row)
            _instant_print(f"c={concurrency:<3}", row)
            if concurrency in route_levels:
                row["routes"] = {}
                for route in ROUTES:
                    figures = self.instant_measure(
                        concurrency,
                        duration=min(duration, 2) if self.quick else duration,
                        reps=reps,
                        route=route,
                    )
                    row["routes"][route.name] = {"path": route.path, **figures}
                    _instant_print(f"  {route.name}", figures)
            self.check(f"instant c={concurrency}")
        return rows

    def instant_measure(
        self, concurrency: int, *, duration: float, reps: int, route: Route | None = None
    ) -> dict:
        """``reps`` pairs of runs, direct then through Tollgate (chat, or ``route``), merged per
        target so that drift hits both: latency, rps, and the CPU and transactions per call."""
        direct_runs, proxy_runs, cpu_total, transactions = [], [], 0.0, 0
        service_cpu = dict.fromkeys(processes.SERVICES, 0.0)
        for rep in range(reps):
            direct_runs.append(self.direct_run(connections=concurrency, duration_s=duration, route=route))
            if rep == 0 and route is None and concurrency == self.args.profile:
                self.profile_start(duration_s=duration)
            stats, cpu, _ = self.proxy_run(connections=concurrency, duration_s=duration, route=route)
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
        p["db_transactions_per_request"] = round(transactions / proxy.requests, 2) if proxy.requests else None
        p["statuses"] = proxy.statuses
        return {
            "direct": d,
            "proxy": p,
            "added_p50_ms": round(p["p50_ms"] - d["p50_ms"], 3),
            "added_p99_ms": round(p["p99_ms"] - d["p99_ms"], 3),
        }

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


def _instant_print(label: str, figures: dict) -> None:
    d, p = figures["direct"], figures["proxy"]
    print(
        f"  {label} direct p50 {d['p50_ms']:.2f} p99 {d['p99_ms']:.2f} ms {d['rps']:.0f} rps | "
        f"proxy p50 {p['p50_ms']:.2f} p99 {p['p99_ms']:.2f} ms {p['rps']:.0f} rps, "
        f"{p['errors']} errors, {p['cpu_ms_per_request']} CPU ms/req "
        f"(PostgreSQL {p['postgresql_cpu_ms_per_request']}, Redis {p['redis_cpu_ms_per_request']}), "
        f"{p['db_transactions_per_request']} DB transactions/req",
        flush=True,
    )


def _added_ttft_p99_ms(*, direct: loadgen.StreamStats, proxy: loadgen.StreamStats) -> float | None:
    """What Tollgate adds to the p99 time to first token; None unless both sides got a token."""
    if not (proxy.ttft_ms and direct.ttft_ms):
        return None
    return round(proxy.ttft_percentile(99) - direct.ttft_percentile(99), 2)
