"""The peer: another AI gateway measured beside Tollgate, alternated, in the same run.

``python -m bench --peer litellm`` installs LiteLLM's proxy at a pinned version into its own
virtualenv (``bench/.work/``, git-ignored; never the project's), serves it with a master key, no
database and the bench's number of workers, every model pointed at the fake upstream Tollgate
uses, and runs the bench's phases through direct, Tollgate and the peer in turn (and the bare
ASGI relay of ``--floor`` for the streams), so that the machine's drift hits all of them. The
figures that matter are the ratios (``peer_ratios``): an absolute figure on a shared 2-core
machine moves from run to run, a ratio measured side by side much less.

``--peer stub`` serves ``bench.stub_peer`` instead, a relay speaking the same protocol: the
tests run the whole peer mode against it without installing LiteLLM.
"""

from __future__ import annotations

import threading
import time

from . import loadgen, processes
from .environment import step
from .peer_servers import Peer, peer_start

# Goals for this machine, read from the ratios (issue 29): (ratio, comparison, bound, needs zero
# errors on both sides). Bigger is better for Tollgate except streams_vs_floor (Tollgate ÷ floor).
GOALS = (
    ("c1_added_p50", ">=", 5.0, False),
    ("c64_rps", ">=", 5.0, True),
    ("inflight_rps", ">=", 1.5, True),
    ("streams_added_ttft_p99", ">=", 3.0, False),
    ("streams_vs_floor", "<=", 2.0, False),
    ("rss", ">=", 3.0, False),
)


# --- the alternated phases --------------------------------------------------------------------


def runner_start(bench, *, floor_application: str, floor_ready_path: str) -> PeerRunner:
    """Start the peer beside the running Tollgate of ``bench``, and the bare floor relay (for
    ``streams_vs_floor``) on Tollgate's stack; ``PeerRunner.stop`` stops both."""
    args = bench.args
    step(f"peer: {args.peer}, {args.workers} workers, master key, no database")
    started = peer_start(
        args.peer,
        port=processes.free_port(),
        upstream_port=bench.upstream_port,
        log_dir=bench.log_dir,
        workers=args.workers,
    )
    floor, floor_port = None, None
    if not args.skip_streams:
        floor_port = processes.free_port()
        step(f"bare floor relay: gunicorn -k {processes.WORKER_CLASS} -w {args.workers}")
        try:
            floor = processes.tollgate_start(
                port=floor_port,
                env={**bench.env, "FLOOR_UPSTREAM_URL": bench.direct_url},
                log_dir=bench.log_dir,
                workers=args.workers,
                application=floor_application,
                ready_path=floor_ready_path,
                name="floor-bare",
            )
        except RuntimeError:
            started.stop()
            raise
    return PeerRunner(bench, started, floor, floor_port=floor_port)


class RssPeaks:
    """Peak RSS of each server's whole process tree, sampled every 0.5 s over the whole run."""

    def __init__(self, targets: dict):
        self.targets = targets  # name -> callable returning the current pids
        self.peaks = dict.fromkeys(targets, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            for name, pids in self.targets.items():
                self.peaks[name] = max(self.peaks[name], processes.rss_mb(pids()))
            if self._stop.wait(0.5):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class PeerRunner:
    """direct, Tollgate, peer (and the bare floor for streams) in turn, phase by phase.

    ``bench`` is the running ``Bench`` (Tollgate, the fake upstream, the accounting check);
    ``floor`` the bare ASGI relay served on Tollgate's stack, or None.
    """

    def __init__(self, bench, peer: Peer, floor: processes.Managed | None, *, floor_port: int | None):
        self.bench = bench
        self.args = bench.args
        self.quick = bench.quick
        self.peer = peer
        self.floor = floor
        self.floor_url = f"http://127.0.0.1:{floor_port}/api/proxy/v1/chat/completions" if floor else None

    def stop(self) -> None:
        self.peer.stop()
        if self.floor is not None:
            self.floor.stop()

    # --- one run per target -------------------------------------------------------------------
    def peer_run(self, *, connections: int, duration_s: float, timeout_s: float = 10.0):
        """A wrk run through the peer, with the CPU time and peak RSS of its processes."""
        pids = self.peer.pids()
        cpu_before = processes.cpu_seconds(pids)
        with processes.RssPeak(pids) as peak:
            stats = loadgen.wrk_run(
                url=self.peer.url,
                connections=connections,
                duration_s=duration_s,
                auth=self.peer.key,
                timeout_s=timeout_s,
            )
        return stats, processes.cpu_seconds(pids) - cpu_before, peak.mb

    def _burst(self, target: str, count: int) -> loadgen.StreamStats:
        url, auth = self._target(target)
        stats = loadgen.streams_run(url=url, count=count, auth=auth)
        if target == "tollgate":
            self.bench.client_ok_min += stats.completed
            self.bench.client_ok_max += stats.count
        return stats

    def _sustained(self, target: str, *, count: int, duration: float, warmup: float) -> loadgen.StreamStats:
        url, auth = self._target(target)
        measured, everything = loadgen.streams_sustained_run(
            url=url, concurrency=count, duration_s=duration, warmup_s=warmup, auth=auth
        )
        if target == "tollgate":
            self.bench.client_ok_min += everything.completed
            self.bench.client_ok_max += everything.count
        return measured

    def _target(self, target: str) -> tuple[str, str]:
        return {
            "direct": (self.bench.direct_url, ""),
            "tollgate": (self.bench.proxy_url, self.bench.tenant.api_key),
            "peer": (self.peer.url, self.peer.key),
            "floor": (self.floor_url, ""),
        }[target]

    # --- phases -------------------------------------------------------------------------------
    def run(self) -> dict:
        targets = {"tollgate": self.bench.tollgate.pids, "peer": self.peer.pids}
        if self.floor is not None:
            targets["floor"] = self.floor.pids
        result: dict = {
            "name": self.peer.name,
            "version": self.peer.version,
            "workers": self.args.workers,
            "books": False,
        }
        with RssPeaks(targets) as rss:
            if not self.args.skip_instant:
                step(f"instant upstream: direct, Tollgate, {self.peer.name} in turn")
                result["instant"] = self.phase_instant()
            if not self.args.skip_inflight:
                step(f"in flight: 2 s upstream, direct, Tollgate, {self.peer.name} in turn")
                result["inflight"] = self.phase_inflight()
            if not self.args.skip_streams:
                step(f"streams: direct, Tollgate, {self.peer.name}, bare floor in turn")
                result["streams"] = self.phase_streams()
        result["rss_mb"] = {name: round(peak, 1) for name, peak in rss.peaks.items()}
        result["ratios"] = peer_ratios(result)
        result["goals"] = peer_goals(result)
        return result

    def phase_instant(self) -> list[dict]:
        bench = self.bench
        bench.upstream_set(latency_ms=0, chunk_interval_ms=0)
        duration = self.args.duration
        reps = 1 if self.quick else self.args.reps
        levels = bench.instant_levels()
        warmup_s = 1 if self.quick else 3
        bench.direct_run(connections=16, duration_s=1)
        bench.proxy_run(connections=16, duration_s=warmup_s)
        self.peer_run(connections=16, duration_s=warmup_s)
        rows = []
        for concurrency in levels:
            runs: dict[str, list] = {"direct": [], "tollgate": [], "peer": []}
            cpu = {"tollgate": 0.0, "peer": 0.0}
            for _ in range(reps):
                runs["direct"].append(bench.direct_run(connections=concurrency, duration_s=duration))
                stats, seconds, _ = bench.proxy_run(connections=concurrency, duration_s=duration)
                runs["tollgate"].append(stats)
                cpu["tollgate"] += seconds
                stats, seconds, _ = self.peer_run(connections=concurrency, duration_s=duration)
                runs["peer"].append(stats)
                cpu["peer"] += seconds
            merged = {name: loadgen.RunStats.merge(stats) for name, stats in runs.items()}
            row: dict = {"concurrency": concurrency}
            for name, stats in merged.items():
                summary = stats.summary()
                summary["statuses"] = stats.statuses
                if name in cpu:
                    summary["cpu_ms_per_request"] = (
                        round(cpu[name] * 1000 / stats.requests, 3) if stats.requests else None
                    )
                row[name] = summary
            for name in ("tollgate", "peer"):
                row[f"{name}_added_p50_ms"] = round(row[name]["p50_ms"] - row["direct"]["p50_ms"], 3)
                row[f"{name}_added_p99_ms"] = round(row[name]["p99_ms"] - row["direct"]["p99_ms"], 3)
            rows.append(row)
            t, p = row["tollgate"], row["peer"]
            print(
                f"  c={concurrency:<3} added p50/p99 ms: Tollgate {row['tollgate_added_p50_ms']:.2f} / "
                f"{row['tollgate_added_p99_ms']:.2f}, {self.peer.name} {row['peer_added_p50_ms']:.2f} / "
                f"{row['peer_added_p99_ms']:.2f} | rps: Tollgate {t['rps']:.0f} ({t['errors']} errors), "
                f"{self.peer.name} {p['rps']:.0f} ({p['errors']} errors), direct {row['direct']['rps']:.0f}",
                flush=True,
            )
            bench.check(f"peer instant c={concurrency}")
        return rows

    def phase_inflight(self) -> dict:
        bench = self.bench
        latency_s = 0.5 if self.quick else 2.0
        bench.upstream_set(latency_ms=latency_s * 1000)
        duration = 3 if self.quick else self.args.inflight_duration
        steps = (20,) if self.quick else tuple(self.args.inflight_steps)
        skip_s = 2 * latency_s + 1
        entries = []
        for connections in steps:
            entry: dict = {"connections": connections}
            direct = bench.direct_run(connections=connections, duration_s=duration)
            entry["direct"] = _inflight_summary(direct, skip_s=skip_s)
            time.sleep(latency_s + 0.5)
            for name, run in (("tollgate", bench.proxy_run), ("peer", self.peer_run)):
                stats, _, rss = run(connections=connections, duration_s=duration, timeout_s=latency_s * 4)
                entry[name] = {**_inflight_summary(stats, skip_s=skip_s), "rss_mb": round(rss, 1)}
                time.sleep(latency_s + 0.5)  # the calls wrk abandoned finish before the next run
            entries.append(entry)
            t, p = entry["tollgate"], entry["peer"]
            print(
                f"  in flight {connections:>4}: Tollgate {t['rps']:.0f} rps, p50 {t['p50_ms']:.0f} ms, "
                f"{t['errors']} errors, RSS {t['rss_mb']:.0f} MB | {self.peer.name} {p['rps']:.0f} rps, "
                f"p50 {p['p50_ms']:.0f} ms, {p['errors']} errors, RSS {p['rss_mb']:.0f} MB | "
                f"direct {entry['direct']['rps']:.0f} rps",
                flush=True,
            )
        bench.upstream_set(latency_ms=0)
        bench.check("peer in-flight")
        return {"upstream_latency_s": latency_s, "duration_s": duration, "steps": entries}

    def phase_streams(self) -> dict:
        bench = self.bench
        count = 10 if self.quick else self.args.streams
        first_token_ms = 200
        bench.upstream_set(latency_ms=first_token_ms, chunk_interval_ms=10)
        names = ["direct", "tollgate", "peer"] + (["floor"] if self.floor is not None else [])
        # One unmeasured burst through each server first: a fresh worker's first burst is not the
        # steady state (as in Bench.phase_streams).
        for name in names[1:]:
            self._burst(name, count)
        rounds = 1 if self.quick else 3
        bursts: dict[str, list] = {name: [] for name in names}
        for _ in range(rounds):
            for name in names:
                bursts[name].append(self._burst(name, count))
        duration, warmup = (1.0, 0.5) if self.quick else (8.0, 2.0)
        kept: dict[str, list] = {name: [] for name in names}
        for _ in range(1 if self.quick else 2):
            for name in names:
                kept[name].append(self._sustained(name, count=count, duration=duration, warmup=warmup))
        bench.upstream_set(latency_ms=0, chunk_interval_ms=0)
        result = {
            "count": count,
            "upstream_latency_ms": first_token_ms,
            "burst": _streams_summary(bursts, rounds=rounds),
            "sustained": {
                **_streams_summary(kept, rounds=len(kept["direct"])),
                "duration_s": duration,
                "warmup_s": warmup,
            },
        }
        for label, figures in (("burst", result["burst"]), ("kept open", result["sustained"])):
            added = ", ".join(
                f"{name} {figures.get(f'{name}_added_ttft_p99_ms')} ms ({figures[f'{name}_errors']} errors)"
                for name in names[1:]
            )
            print(f"  {count} streams, {label}: added TTFT p99 {added}", flush=True)
        bench.check("peer streams")
        return result


def _inflight_summary(stats: loadgen.RunStats, *, skip_s: float) -> dict:
    summary = stats.summary()
    steady = stats.steady_rps(skip_s=skip_s)
    return {
        "rps": summary["rps"],
        "steady_rps": None if steady is None else round(steady, 1),
        "p50_ms": summary["p50_ms"],
        "p99_ms": summary["p99_ms"],
        "errors": stats.errors,
        "statuses": stats.statuses,
    }


def _streams_summary(runs: dict[str, list], *, rounds: int) -> dict:
    merged = {name: loadgen.StreamStats.merge(stats) for name, stats in runs.items()}
    direct = merged["direct"]
    out: dict = {"rounds": rounds}
    for name, stats in merged.items():
        out[f"{name}_ttft_p50_ms"] = round(stats.ttft_percentile(50), 2) if stats.ttft_ms else None
        out[f"{name}_ttft_p99_ms"] = round(stats.ttft_percentile(99), 2) if stats.ttft_ms else None
        out[f"{name}_errors"] = stats.errors
        out[f"{name}_streams"] = stats.count
        if name != "direct":
            out[f"{name}_added_ttft_p99_ms"] = (
                round(stats.ttft_percentile(99) - direct.ttft_percentile(99), 2)
                if stats.ttft_ms and direct.ttft_ms
                else None
            )
            out[f"{name}_statuses"] = stats.statuses
    return out


# --- ratios and goals -------------------------------------------------------------------------


def _ratio(numerator, denominator) -> float | None:
    """numerator ÷ denominator, or None when either is missing, the denominator is not > 0 or the
    numerator is below 0 (an added latency at or below zero is noise: no ratio is made of it)."""
    if numerator is None or denominator is None or denominator <= 0 or numerator < 0:
        return None
    return round(numerator / denominator, 2)


def _instant_row(rows: list[dict], concurrency: int) -> dict:
    return next((row for row in rows if row["concurrency"] == concurrency), {})


def peer_ratios(peer: dict) -> dict:
    """Each ratio written so that bigger is better for Tollgate: peer ÷ Tollgate for latencies
    and memory, Tollgate ÷ peer for throughput; ``streams_vs_floor`` is Tollgate ÷ the bare
    floor's added TTFT p99 (2 = Tollgate adds twice what the bare relay adds)."""
    instant = peer.get("instant") or []
    c1, c64 = _instant_row(instant, 1), _instant_row(instant, 64)
    steps = (peer.get("inflight") or {}).get("steps") or []
    inflight = next((entry for entry in steps if entry["connections"] == 500), steps[-1] if steps else {})
    streams = peer.get("streams") or {}
    burst, kept = streams.get("burst") or {}, streams.get("sustained") or {}
    rss = peer.get("rss_mb") or {}
    return {
        "c1_added_p50": _ratio(c1.get("peer_added_p50_ms"), c1.get("tollgate_added_p50_ms")),
        "c1_added_p99": _ratio(c1.get("peer_added_p99_ms"), c1.get("tollgate_added_p99_ms")),
        "c64_rps": _ratio(c64.get("tollgate", {}).get("rps"), c64.get("peer", {}).get("rps")),
        "inflight_rps": _ratio(inflight.get("tollgate", {}).get("rps"), inflight.get("peer", {}).get("rps")),
        "streams_added_ttft_p99": _ratio(
            burst.get("peer_added_ttft_p99_ms"), burst.get("tollgate_added_ttft_p99_ms")
        ),
        "sustained_added_ttft_p99": _ratio(
            kept.get("peer_added_ttft_p99_ms"), kept.get("tollgate_added_ttft_p99_ms")
        ),
        "rss": _ratio(rss.get("peer"), rss.get("tollgate")),
        "streams_vs_floor": _ratio(
            burst.get("tollgate_added_ttft_p99_ms"), burst.get("floor_added_ttft_p99_ms")
        ),
    }


def _errors(peer: dict, ratio: str) -> int | None:
    """Tollgate's errors in the phase a throughput ratio is read on (None if not measured)."""
    if ratio == "c64_rps":
        row = _instant_row(peer.get("instant") or [], 64)
        return row["tollgate"]["errors"] if row else None
    steps = (peer.get("inflight") or {}).get("steps") or []
    entry = next((e for e in steps if e["connections"] == 500), steps[-1] if steps else None)
    return entry["tollgate"]["errors"] if entry else None


def peer_goals(peer: dict) -> list[dict]:
    """The issue's goals for this machine, met or not (goals to report, not test assertions)."""
    ratios = peer.get("ratios") or peer_ratios(peer)
    goals = []
    for ratio, comparison, bound, zero_errors in GOALS:
        value = ratios.get(ratio)
        errors = _errors(peer, ratio) if zero_errors else None
        if value is None:
            met = None
        else:
            met = value >= bound if comparison == ">=" else value <= bound
            met = met and not errors
        goals.append({"ratio": ratio, "goal": f"{comparison} {bound:g}", "value": value, "met": met})
    return goals
