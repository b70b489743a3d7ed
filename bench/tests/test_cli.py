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
