"""The results table says what the JSON says, including a failed accounting check."""

from bench import report


def _results(accounting_ok: bool) -> dict:
    stats = {"p50_ms": 1.0, "p90_ms": 2.0, "p99_ms": 3.0, "rps": 100.0}
    return {
        "instant": [
            {
                "concurrency": 16,
                "direct": stats,
                "proxy": {
                    **stats,
                    "p50_ms": 3.5,
                    "errors": 0,
                    "cpu_ms_per_request": 1.25,
                    "postgresql_cpu_ms_per_request": 0.875,
                    "redis_cpu_ms_per_request": 0.25,
                },
                "added_p50_ms": 2.5,
                "added_p99_ms": 0.0,
            }
        ],
        "inflight": {
            "upstream_latency_s": 2.0,
            "connections": 500,
            "steps": [
                {
                    "connections": 500,
                    "rps": 240.0,
                    "p50_ms": 2050,
                    "p99_ms": 2300,
                    "errors": 0,
                    "rss_mb": 300,
                    "held": True,
                },
                {
                    "connections": 750,
                    "rps": 200.0,
                    "p50_ms": 3000,
                    "p99_ms": 5000,
                    "errors": 7,
                    "rss_mb": 350,
                    "held": False,
                    "steady_rps": 212.5,
                    "direct_rps": 230.0,
                    "direct_steady_rps": 249.0,
                    "direct_p50_ms": 2006,
                },
            ],
        },
        "streams": {"count": 200, "added_ttft_p99_ms": None, "errors": 200},
        "accounting_ok": accounting_ok,
        "accounting_problems": [] if accounting_ok else ["after streams: 3 reservations still held"],
    }


def test_table_rows_and_verdict():
    table = report.results_markdown(_results(accounting_ok=False))
    assert (
        "| 16 | 1.00 / 2.00 / 3.00 | 3.50 / 2.00 / 3.00 | 2.50 / 0.00 | 100 | 100 | 0 | 1.25 "
        "| 0.88 / 0.25 | n/a |" in table
    )
    assert "largest step held with zero errors: **500**" in table
    assert "| 750 | 200.0 | 212.5 | 3000 | 5000 | 7 | 350 | no | 230.0 | 249.0 | 2006 |" in table
    assert "| 500 | 240.0 | n/a | 2050 |" in table  # a run without per-second counts
    assert "**added n/a ms**" in table  # no stream got through: no number is invented
    assert "Accounting exact in every run: **NO**" in table
    assert "- after streams: 3 reservations still held" in table
    assert "**yes**" in report.results_markdown(_results(accounting_ok=True))


def test_routes_get_their_own_rows_beside_chat():
    results = _results(accounting_ok=True)
    (row,) = results["instant"]
    route = {key: row[key] for key in ("direct", "proxy", "added_p50_ms", "added_p99_ms")}
    row["routes"] = {
        "embeddings": {"path": "/api/proxy/v1/embeddings", **route, "added_p50_ms": 4.25},
        "messages": {"path": "/api/proxy/v1/messages", **route},
    }
    table = report.results_markdown(results)
    assert (
        "| `/api/proxy/v1/embeddings` | 16 | 1.00 / 2.00 / 3.00 | 3.50 / 2.00 / 3.00 | 4.25 / 0.00 |" in table
    )
    assert "| `/api/proxy/v1/messages` | 16 |" in table
    assert "measures chat completions only" in table
    # A run without the routes (an older results.json, a floor) prints no routes table.
    del row["routes"]
    assert "API-surface routes" not in report.results_markdown(results)
