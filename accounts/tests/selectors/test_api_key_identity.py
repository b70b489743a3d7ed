import pytest

from accounts.keys import api_key_generate
from accounts.selectors import api_key_get, api_key_identity_get, api_key_list
from accounts.services import api_key_revoke
from accounts.tests.factories import api_key_for
from core.exceptions import ApiError

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "sk_agentai_",
        "not-a-key",
        "sk_agentai_" + "A" * 46,  # right shape, wrong checksum
        "sk_agentai_" + "!" * 46,
        "Bearer sk_agentai_x",
    ],
)
def test_malformed_keys_are_rejected_without_a_query(garbage, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert api_key_identity_get(raw_key=garbage) is None


def test_a_flipped_character_fails_the_checksum_without_a_query(user, django_assert_num_queries):
    _, plaintext = api_key_for(user)
    flipped = plaintext[:-10] + ("a" if plaintext[-10] != "a" else "b") + plaintext[-9:]
    with django_assert_num_queries(0):
        assert api_key_identity_get(raw_key=flipped) is None


def test_well_formed_unknown_key_costs_one_query(django_assert_num_queries):
    with django_assert_num_queries(1):
        assert api_key_identity_get(raw_key=api_key_generate()) is None


def test_known_key_is_cached_after_the_first_lookup(user, django_assert_num_queries):
    api_key, plaintext = api_key_for(user)
    with django_assert_num_queries(1):
        assert api_key_identity_get(raw_key=plaintext).key_id == api_key.pk
    with django_assert_num_queries(0):
        assert api_key_identity_get(raw_key=plaintext).user_id == user.pk


def test_list_and_get_are_scoped_to_the_user(user, other_user):
    mine, _ = api_key_for(user)
    theirs, _ = api_key_for(other_user)
    assert [k.pk for k in api_key_list(user=user)] == [mine.pk]
    assert api_key_get(user=user, key_id=mine.pk) == mine
    with pytest.raises(ApiError) as exc:
        api_key_get(user=user, key_id=theirs.pk)
    assert exc.value.status_code == 404


def test_list_includes_revoked_keys_newest_first(user):
    first, _ = api_key_for(user, name="first")
    second, _ = api_key_for(user, name="second")
    api_key_revoke(user=user, key_id=first.pk)
    assert [k.name for k in api_key_list(user=user)] == ["second", "first"]
