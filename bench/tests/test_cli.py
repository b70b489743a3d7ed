"""The bench's command line: the A/B options docs/bench.md documents."""

import pytest

from bench.__main__ import parse_args


def test_instant_levels_default_to_1_16_64_and_can_be_narrowed():
    assert parse_args([]).concurrency == [1, 16, 64]
    assert parse_args(["--concurrency", "1"]).concurrency == [1]
    assert parse_args(["--concurrency", "1,64"]).concurrency == [1, 64]


def test_in_flight_steps_default_to_100_up_to_1000_and_can_be_narrowed():
    assert parse_args([]).inflight_steps == [100, 250, 500, 750, 1000]
    assert parse_args(["--inflight-steps", "500"]).inflight_steps == [500]


def test_a_malformed_level_list_is_refused():
    with pytest.raises(SystemExit):
        parse_args(["--concurrency", "1,many"])


@pytest.mark.parametrize(
    ("argv", "profiled"),
    [([], None), (["--profile"], 64), (["--profile", "1"], 1), (["--profile", "16", "--quick"], 16)],
)
def test_profile_names_the_level_it_samples(argv, profiled):
    assert parse_args(argv).profile == profiled


def test_against_a_peer_the_in_flight_phase_runs_at_500():
    args = parse_args(["--peer", "litellm"])
    assert (args.peer, args.inflight_steps) == ("litellm", [500])
    assert parse_args(["--peer", "stub", "--inflight-steps", "100"]).inflight_steps == [100]
    with pytest.raises(SystemExit):
        parse_args(["--peer", "kong"])


def test_the_bench_database_and_redis_db_live_on_the_servers_the_environment_names(monkeypatch):
    monkeypatch.delenv("BENCH_DATABASE_URL", raising=False)
    monkeypatch.delenv("BENCH_REDIS_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgres://postgres@127.0.0.1:41234/tollgate")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:41235/0")
    args = parse_args([])
    assert args.database_url == "postgres://postgres@127.0.0.1:41234/tollgate_bench"
    assert args.redis_url == "redis://127.0.0.1:41235/7"
    assert parse_args(["--dashboards"]).database_url.endswith(":41234/tollgate_bench_dashboards")

    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.delenv("REDIS_URL")
    args = parse_args([])
    assert args.database_url == "postgres://postgres@127.0.0.1:5432/tollgate_bench"
    assert args.redis_url == "redis://127.0.0.1:6379/7"
