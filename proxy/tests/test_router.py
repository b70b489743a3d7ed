import random
from collections import Counter

import pytest
from django.core.cache import cache

from proxy.router import (
    chain_without_cooling,
    provider_chain,
    provider_failure_record,
    provider_pick,
    provider_success_record,
    providers_cooling_get,
)


def test_mix_85_15_within_5_percent_over_1000_calls_with_a_fixed_seed():
    rng = random.Random(42)

    picks = Counter(provider_pick(weights={"groq": 85, "openrouter": 15}, rng=rng) for _ in range(1000))

    assert set(picks) == {"groq", "openrouter"}
    assert 800 <= picks["groq"] <= 900
    assert picks["groq"] + picks["openrouter"] == 1000


def test_same_seed_same_sequence():
    first = [provider_pick(weights={"a": 1, "b": 1}, rng=random.Random(7)) for _ in range(1)]
    rng1, rng2 = random.Random(7), random.Random(7)
    assert [provider_pick(weights={"a": 1, "b": 1}, rng=rng1) for _ in range(50)] == [
        provider_pick(weights={"a": 1, "b": 1}, rng=rng2) for _ in range(50)
    ]
    assert first[0] in {"a", "b"}


def test_zero_weights_never_win_and_empty_weights_pick_nothing():
    rng = random.Random(1)
    assert {provider_pick(weights={"a": 100, "b": 0}, rng=rng) for _ in range(200)} == {"a"}
    assert provider_pick(weights={}, rng=rng) is None


def test_chain_is_pick_then_by_weight_then_fallback_without_duplicates():
    class Always:  # an RNG stub that picks the last ticket
        def randrange(self, total):
            return total - 1

    chain = provider_chain(weights={"groq": 85, "openrouter": 15}, fallback_provider="groq", rng=Always())

    assert chain == ["openrouter", "groq"]
    assert provider_chain(weights={"deepseek": 100}, fallback_provider="groq", rng=random.Random(1)) == [
        "deepseek",
        "groq",
    ]


@pytest.mark.django_db
def test_n_failures_in_a_row_put_a_provider_in_cooldown(settings):
    settings.PROXY_COOLDOWN_FAILURES = 3

    assert provider_failure_record(provider="groq") is False
    provider_success_record(provider="groq")  # a success breaks the run
    assert provider_failure_record(provider="groq") is False
    assert provider_failure_record(provider="groq") is False
    assert provider_failure_record(provider="groq") is True

    assert providers_cooling_get(providers=["groq", "openrouter"]) == {"groq"}
    assert chain_without_cooling(chain=["groq", "openrouter"]) == ["openrouter"]
    assert chain_without_cooling(chain=["groq"]) == ["groq"]  # never skip everything


def test_a_failure_count_deleted_under_our_feet_never_raises(monkeypatch, settings):
    """A success deletes the failure counter; a concurrent failure used to hit ``incr`` on the
    missing key after losing the ``add`` race and answer 500."""

    def vanished(*args, **kwargs):
        raise ValueError("Key not found")

    monkeypatch.setattr(cache, "incr", vanished)
    monkeypatch.setattr(cache, "add", lambda *args, **kwargs: False)  # someone else re-created it

    assert provider_failure_record(provider="groq") is False  # counted alone, no exception
