"""``bench/results.json`` and its markdown table."""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS_JSON = HERE / "results.json"
RESULTS_MD = HERE / "results.md"


def _triple(stats: dict) -> str:
    return " / ".join(_fmt(stats[key], digits=2) for key in ("p50_ms", "p90_ms", "p99_ms"))


def _fmt(value, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    return f"{value:.{digits}f}{unit}"


def results_markdown(results: dict) -> str:
    lines = [f"Tollgate bench — {results.get('meta', {}).get('summary', '')}".rstrip(" —"), ""]
    instant = results.get("instant") or []
    if instant:
        lines += [
            "| concurrency | direct p50 / p90 / p99 ms | proxy p50 / p90 / p99 ms | added p50 / p99 ms "
            "| proxy rps | direct rps | errors | CPU ms/req | PostgreSQL / Redis CPU ms/req | DB tx/req |",
            "|---:|---|---|---|---:|---:|---:|---:|---|---:|",
        ]
        for row in instant:
            d, p = row["direct"], row["proxy"]
            lines.append(
                f"| {row['concurrency']} "
                f"| {_triple(d)} | {_triple(p)} "
                f"| {_fmt(row['added_p50_ms'], digits=2)} / {_fmt(row['added_p99_ms'], digits=2)} "
                f"| {_fmt(p['rps'], digits=0)} | {_fmt(d['rps'], digits=0)} | {p['errors']} "
                f"| {_fmt(p['cpu_ms_per_request'], digits=2)} "
                f"| {_fmt(p.get('postgresql_cpu_ms_per_request'), digits=2)} / "
                f"{_fmt(p.get('redis_cpu_ms_per_request'), digits=2)} "
                f"| {_fmt(p.get('db_transactions_per_request'))} |"
            )
        lines.append("")
        lines += routes_markdown(instant)
    inflight = results.get("inflight")
    if inflight:
        lines += [
            f"In flight, upstream latency {inflight['upstream_latency_s']} s, "
            f"{_fmt(inflight.get('duration_s'), digits=0)} s per run "
            f"(largest step held with zero errors: **{inflight['connections']}**)",
            "",
            "| connections | rps (window) | rps (steady) | p50 ms | p99 ms | errors | RSS MB | held "
            "| direct rps (window) | direct rps (steady) | direct p50 ms |",
            "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
        ]
        for step in inflight.get("steps", []):
            lines.append(
                f"| {step['connections']} | {_fmt(step['rps'])} | {_fmt(step.get('steady_rps'))} "
                f"| {_fmt(step['p50_ms'], digits=0)} "
                f"| {_fmt(step['p99_ms'], digits=0)} | {step['errors']} | {_fmt(step['rss_mb'], digits=0)} "
                f"| {'yes' if step['held'] else 'no'} | {_fmt(step.get('direct_rps'))} "
                f"| {_fmt(step.get('direct_steady_rps'))} | {_fmt(step.get('direct_p50_ms'), digits=0)} |"
            )
        lines += [
            "",
            "rps (window): completed calls ÷ the whole window, as wrk counts them. rps (steady): "
            "calls completed per second after the first two upstream latencies and before the "
            "window's last second.",
        ]
        lines.append("")
    streams = results.get("streams")
    if streams:
        lines += [
            f"Streams: {streams['count']} concurrent, TTFT p99 "
            f"direct {_fmt(streams.get('direct_ttft_p99_ms'))} ms, "
            f"proxy {_fmt(streams.get('proxy_ttft_p99_ms'))} ms, "
            f"**added {_fmt(streams['added_ttft_p99_ms'])} ms**, errors {streams['errors']} "
            f"(upstream first-token delay {streams.get('upstream_latency_ms')} ms)",
            "",
        ]
        sustained = streams.get("sustained")
        if sustained:
            lines += [
                f"Streams kept open: {sustained['concurrency']} at a time for "
                f"{_fmt(sustained['duration_s'], digits=0)} s after {_fmt(sustained['warmup_s'])} s of "
                f"warm-up, each client starting its next stream when one ends "
                f"({sustained['streams']} measured), TTFT p99 "
                f"direct {_fmt(sustained.get('direct_ttft_p99_ms'))} ms, "
                f"proxy {_fmt(sustained.get('proxy_ttft_p99_ms'))} ms, "
                f"**added {_fmt(sustained['added_ttft_p99_ms'])} ms**, errors {sustained['errors']}",
                "",
            ]
    dashboards = results.get("dashboards")
    if dashboards:
        lines += [
            f"Dashboards with {dashboards.get('events')} usage events (p50 of 20): "
            f"/dashboard/ {_fmt(dashboards.get('dashboard_ms'), ' ms')}, "
            f"/activity/ {_fmt(dashboards.get('activity_ms'), ' ms')}, "
            f"/keys/ {_fmt(dashboards.get('keys_ms'), ' ms')}, "
            f"/billing/ {_fmt(dashboards.get('billing_ms'), ' ms')}, "
            f"/admin/dashboard/ {_fmt(dashboards.get('admin_dashboard_ms'), ' ms')}, "
            f"GET /api/admin/dashboard {_fmt(dashboards.get('api_admin_dashboard_ms'), ' ms')}",
            "",
        ]
    floor = results.get("floor")
    if floor:
        lines += [floor_markdown(floor)]
    if results.get("peer"):
        lines += [peer_markdown(results["peer"])]
    lines.append(f"Accounting exact in every run: **{'yes' if results.get('accounting_ok') else 'NO'}**")
    for problem in results.get("accounting_problems", [])[:20]:
        lines.append(f"- {problem}")
    return "\n".join(lines) + "\n"


def routes_markdown(instant: list[dict]) -> list[str]:
    """The API-surface routes measured beside chat completions (rows with ``routes``)."""
    measured = [row for row in instant if row.get("routes")]
    if not measured:
        return []
    lines = [
        "API-surface routes, measured like chat completions at the same concurrency:",
        "",
        "| route | concurrency | direct p50 / p90 / p99 ms | proxy p50 / p90 / p99 ms | added p50 / p99 ms "
        "| proxy rps | direct rps | errors | CPU ms/req | PostgreSQL / Redis CPU ms/req | DB tx/req |",
        "|---|---:|---|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for row in measured:
        for name, route in row["routes"].items():
            d, p = route["direct"], route["proxy"]
            lines.append(
                f"| `{route.get('path', name)}` | {row['concurrency']} "
                f"| {_triple(d)} | {_triple(p)} "
                f"| {_fmt(route['added_p50_ms'], digits=2)} / {_fmt(route['added_p99_ms'], digits=2)} "
                f"| {_fmt(p['rps'], digits=0)} | {_fmt(d['rps'], digits=0)} | {p['errors']} "
                f"| {_fmt(p.get('cpu_ms_per_request'), digits=2)} "
                f"| {_fmt(p.get('postgresql_cpu_ms_per_request'), digits=2)} / "
                f"{_fmt(p.get('redis_cpu_ms_per_request'), digits=2)} "
                f"| {_fmt(p.get('db_transactions_per_request'))} |"
            )
    lines += [
        "",
        "direct: the call Tollgate makes upstream for the route, straight at the fake upstream "
        "(`/v1/embeddings`; chat completions for Responses and Messages, which Tollgate bridges "
        "from chat). Each route's usage events (their own endpoint) are checked against the "
        "clients' count and the upstream's usage after every phase. The peer comparison "
        "(`--peer`) measures chat completions only.",
        "",
    ]
    return lines


FLOOR_TITLES = {
    "bare": "bare ASGI relay (`bench/floor.py`)",
    "django": "Django + DRF relay (`bench/floor_django.py`)",
}


def floor_markdown(floor: dict) -> str:
    """The floors (``--floor``): what relays on Tollgate's stack add with no key and no billing."""
    meta = floor.get("meta", {})
    lines = [
        f"Floors — relays on the same stack with no key, no limits and no books "
        f"({meta.get('summary', '')}; `python -m bench --floor`):",
        "",
    ]
    kinds = [kind for kind in FLOOR_TITLES if floor.get(kind)]
    if any(floor[kind].get("instant") for kind in kinds):
        lines += [
            "| floor | concurrency | direct p50 / p99 ms | relay p50 / p99 ms | added p50 / p99 ms "
            "| relay rps | CPU ms/req |",
            "|---|---:|---|---|---|---:|---:|",
        ]
        for kind in kinds:
            for row in floor[kind].get("instant") or []:
                d, p = row["direct"], row["proxy"]
                lines.append(
                    f"| {kind} | {row['concurrency']} "
                    f"| {_fmt(d['p50_ms'], digits=2)} / {_fmt(d['p99_ms'], digits=2)} "
                    f"| {_fmt(p['p50_ms'], digits=2)} / {_fmt(p['p99_ms'], digits=2)} "
                    f"| {_fmt(row['added_p50_ms'], digits=2)} / {_fmt(row['added_p99_ms'], digits=2)} "
                    f"| {_fmt(p['rps'], digits=0)} | {_fmt(p['cpu_ms_per_request'], digits=2)} |"
                )
        lines.append("")
    for kind in kinds:
        streams = floor[kind].get("streams")
        if streams:
            sustained = streams.get("sustained") or {}
            lines += [
                f"- {FLOOR_TITLES[kind]}: {streams['count']} streams, added TTFT p99 "
                f"**{_fmt(streams['added_ttft_p99_ms'])} ms** in a burst "
                f"(direct {_fmt(streams.get('direct_ttft_p99_ms'))}, "
                f"relay {_fmt(streams.get('proxy_ttft_p99_ms'))}), "
                f"{_fmt(sustained.get('added_ttft_p99_ms'))} ms kept open, errors {streams['errors']}"
            ]
    lines.append("")
    return "\n".join(lines)


PEER_TITLES = {"litellm": "LiteLLM", "stub": "stub peer"}
GOAL_TEXTS = {
    "c1_added_p50": "added p50 at c=1 at least 5× lower than {peer}'s",
    "c64_rps": "c=64 throughput at least 5× {peer}'s, zero errors",
    "inflight_rps": "500-in-flight throughput at least 1.5× {peer}'s, zero errors",
    "streams_added_ttft_p99": "200-stream burst: added TTFT p99 at least 3× lower than {peer}'s",
    "streams_vs_floor": "200-stream burst: added TTFT p99 within 2× of the bare-ASGI floor's",
    "rss": "peak RSS at most a third of {peer}'s",
}


def _times(value) -> str:
    return "n/a" if value is None else f"{value:.2f}×"


def _ratio_of(numerator, denominator):
    """As ``bench.peer._ratio``: no ratio of a missing figure or of noise (≤ 0 added)."""
    if numerator is None or denominator is None or denominator <= 0 or numerator < 0:
        return None
    return numerator / denominator


def peer_markdown(peer: dict) -> str:
    """``--peer``: Tollgate beside another gateway in the same run, and the ratios."""
    name = PEER_TITLES.get(peer.get("name"), peer.get("name", "peer"))
    version = f" {peer['version']}" if peer.get("version") else ""
    meta = peer.get("meta", {})
    ratios = peer.get("ratios") or {}
    lines = [
        f"Against {name}{version} in the same run ({meta.get('summary', '')}; "
        f"`python -m bench --peer {peer.get('name')}`): direct, Tollgate, {name} in turn, phase by "
        f"phase, {peer.get('workers', 2)} workers each, the same fake upstream. "
        f"**{name[:1].upper()}{name[1:]} keeps no books** (a master key and no database: no "
        f"per-key lookup, no quota, no usage log, no spend), so the comparison flatters it; "
        f"Tollgate does all its billing work "
        f"(accounting exact after every phase: "
        f"**{'yes' if peer.get('accounting_ok') else 'NO'}**). Ratios: bigger is better for Tollgate. "
        f"Chat completions only: the API-surface routes (embeddings, Responses, Messages) are in "
        f"`make bench`'s own table.",
        "",
        f"| phase | direct | Tollgate | {name} | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in peer.get("instant") or []:
        c, d, t, p = row["concurrency"], row["direct"], row["tollgate"], row["peer"]
        t_added, p_added = (
            f"{_fmt(row[f'{who}_added_p50_ms'], digits=2)} / {_fmt(row[f'{who}_added_p99_ms'], digits=2)}"
            for who in ("tollgate", "peer")
        )
        lines.append(
            f"| c={c}: added p50 / p99 ms | {_fmt(d['p50_ms'], digits=2)} / {_fmt(d['p99_ms'], digits=2)} "
            f"| {t_added} | {p_added} "
            f"| {_times(_ratio_of(row['peer_added_p50_ms'], row['tollgate_added_p50_ms']))} / "
            f"{_times(_ratio_of(row['peer_added_p99_ms'], row['tollgate_added_p99_ms']))} |"
        )
        lines.append(
            f"| c={c}: rps (errors), CPU ms per call | {_fmt(d['rps'], digits=0)} "
            f"| {_fmt(t['rps'], digits=0)} ({t['errors']}), {_fmt(t.get('cpu_ms_per_request'), digits=2)} "
            f"| {_fmt(p['rps'], digits=0)} ({p['errors']}), {_fmt(p.get('cpu_ms_per_request'), digits=2)} "
            f"| {_times(_ratio_of(t['rps'], p['rps']))} |"
        )
    inflight = peer.get("inflight") or {}
    for entry in inflight.get("steps") or []:
        d, t, p = entry["direct"], entry["tollgate"], entry["peer"]
        lines.append(
            f"| {entry['connections']} in flight, {_fmt(inflight.get('upstream_latency_s'))} s upstream: "
            f"rps (errors), p50 ms | {_fmt(d['rps'])}, {_fmt(d['p50_ms'], digits=0)} "
            f"| {_fmt(t['rps'])} ({t['errors']}), {_fmt(t['p50_ms'], digits=0)} "
            f"| {_fmt(p['rps'])} ({p['errors']}), {_fmt(p['p50_ms'], digits=0)} "
            f"| {_times(_ratio_of(t['rps'], p['rps']))} |"
        )
    streams = peer.get("streams") or {}
    for key, label in (("burst", "started in the same instant"), ("sustained", "kept open")):
        figures = streams.get(key)
        if not figures:
            continue
        ratio = ratios.get("streams_added_ttft_p99" if key == "burst" else "sustained_added_ttft_p99")
        lines.append(
            f"| {streams.get('count')} streams {label}: added TTFT p99 ms (errors) "
            f"| TTFT p99 {_fmt(figures.get('direct_ttft_p99_ms'))} "
            f"| {_fmt(figures.get('tollgate_added_ttft_p99_ms'))} ({figures.get('tollgate_errors')}) "
            f"| {_fmt(figures.get('peer_added_ttft_p99_ms'))} ({figures.get('peer_errors')}) "
            f"| {_times(ratio)} |"
        )
    rss = peer.get("rss_mb") or {}
    if rss:
        lines.append(
            f"| peak RSS MB, all processes of the server | | {_fmt(rss.get('tollgate'), digits=0)} "
            f"| {_fmt(rss.get('peer'), digits=0)} | {_times(ratios.get('rss'))} |"
        )
    lines.append("")
    burst = streams.get("burst") or {}
    if burst.get("floor_added_ttft_p99_ms") is not None or "floor_errors" in burst:
        kept = streams.get("sustained") or {}
        lines += [
            f"The bare ASGI floor (`bench/floor.py`, no key and no books, on Tollgate's stack) in the "
            f"same streams rounds: added TTFT p99 {_fmt(burst.get('floor_added_ttft_p99_ms'))} ms in the "
            f"burst, {_fmt(kept.get('floor_added_ttft_p99_ms'))} ms kept open; Tollgate ÷ floor "
            f"(`streams_vs_floor`, smaller is better): **{_times(ratios.get('streams_vs_floor'))}**.",
            "",
        ]
    goals = peer.get("goals") or []
    if goals:
        lines += ["| goal on this machine | ratio | |", "|---|---:|---|"]
        for goal in goals:
            verdict = {True: "met", False: "missed", None: "not measured"}[goal["met"]]
            text = GOAL_TEXTS.get(goal["ratio"], goal["ratio"]).format(peer=name)
            lines.append(
                f"| {text} (`{goal['ratio']}` {goal['goal']}) | {_times(goal['value'])} | {verdict} |"
            )
        lines.append("")
    for problem in peer.get("accounting_problems", [])[:20]:
        lines.append(f"- {problem}")
    return "\n".join(lines) + "\n"


def results_write(results: dict) -> str:
    existing = {}
    if RESULTS_JSON.exists():
        try:
            existing = json.loads(RESULTS_JSON.read_text())
        except ValueError:
            existing = {}
    # A dashboards-only run keeps the last hot-path figures, and the other way round.
    merged = {**existing, **{k: v for k, v in results.items() if v is not None}}
    RESULTS_JSON.write_text(json.dumps(merged, indent=2, default=str) + "\n")
    table = results_markdown(merged)
    RESULTS_MD.write_text(table)
    return table
