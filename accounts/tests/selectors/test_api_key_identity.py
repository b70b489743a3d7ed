import pytest

from accounts.keys import api_key_generate
from accounts.models import ApiKey, Role
from accounts.selectors import api_key_get, api_key_identity_get, api_key_list
from accounts.services import api_key_revoke
from accounts.tests.factories import api_key_for, member_add, team_workspace
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
        identity = api_key_identity_get(raw_key=plaintext)
    assert (identity.workspace_id, identity.user_id) == (user.personal_workspace.pk, user.pk)
    assert identity.workspace_id != identity.user_id  # the test database keeps the two id ranges apart


def test_a_key_in_a_team_workspace_acts_on_it_as_its_creator(user):
    team = team_workspace()
    member_add(team, role=Role.DEVELOPER, user=user)
    api_key, plaintext = api_key_for(user, workspace=team)
    identity = api_key_identity_get(raw_key=plaintext)
    assert (identity.key_id, identity.workspace_id, identity.user_id) == (api_key.pk, team.pk, user.pk)


def test_a_key_whose_creator_is_gone_has_no_identity(user):
    api_key, plaintext = api_key_for(user)
    ApiKey.objects.filter(pk=api_key.pk).update(created_by=None)  # the account was deleted
    assert api_key_identity_get(raw_key=plaintext) is None


def test_list_and_get_are_scoped_to_the_workspace(user, other_user):
    mine, _ = api_key_for(user)
    theirs, _ = api_key_for(other_user)
    workspace = user.personal_workspace
    assert [k.pk for k in api_key_list(workspace=workspace)] == [mine.pk]
    assert api_key_get(workspace=workspace, key_id=mine.pk) == mine
    with pytest.raises(ApiError) as exc:
        api_key_get(workspace=workspace, key_id=theirs.pk)
    assert exc.value.status_code == 404


def test_list_of_one_member_keeps_to_the_keys_they_created(user, other_user):
    team = team_workspace(owner=user)
    member_add(team, role=Role.DEVELOPER, user=other_user)
    own, _ = api_key_for(user, workspace=team)
    theirs, _ = api_key_for(other_user, workspace=team)
    assert [k.pk for k in api_key_list(workspace=team)] == [theirs.pk, own.pk]
    assert [k.pk for k in api_key_list(workspace=team, created_by=other_user)] == [theirs.pk]


def test_list_includes_revoked_keys_newest_first(user):
    first, _ = api_key_for(user, name="first")
    second, _ = api_key_for(user, name="second")
    api_key_revoke(workspace=user.personal_workspace, key_id=first.pk)
    assert [k.name for k in api_key_list(workspace=user.personal_workspace)] == ["second", "first"]
