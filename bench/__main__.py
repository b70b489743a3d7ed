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
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime

from . import loadgen, peer, report
from .environment import step
from .floor_bench import FLOORS, floor_run
from .peer_servers import PEERS
from .phases import Bench
from .processes import ROOT

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/tollgate_bench"
DASHBOARDS_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/tollgate_bench_dashboards"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/7"
INFLIGHT_STEPS = (100, 250, 500, 750, 1000)
PEER_INFLIGHT = 500


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
        choices=PEERS,
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
            from bench.dashboards import dashboards_bench  # noqa: PLC0415 (Django setup must run first: bench.prepare does it)

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
