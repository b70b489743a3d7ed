"""Who gets "the customer's" mail for a workspace, and a member's role in it."""

import pytest
from django.contrib.auth.models import AnonymousUser

from accounts.models import Role
from accounts.selectors import workspace_billing_emails, workspace_member_role_get
from accounts.tests.factories import UserFactory, member_add, team_workspace

pytestmark = pytest.mark.django_db


def test_billing_emails_are_the_active_owners_and_billing_members_sorted(django_assert_num_queries):
    owner = UserFactory(email="zed-owner@example.com")
    team = team_workspace(owner=owner)
    member_add(team, role=Role.BILLING, user=UserFactory(email="accounts@example.com"))
    member_add(team, role=Role.OWNER, user=UserFactory(email="co-owner@example.com"))
    member_add(team, role=Role.ADMIN, user=UserFactory(email="admin@example.com"))
    member_add(team, role=Role.DEVELOPER, user=UserFactory(email="dev@example.com"))
    member_add(team, role=Role.BILLING, user=UserFactory(email="gone@example.com", is_active=False))
    team_workspace(owner=UserFactory(email="elsewhere@example.com"))

    with django_assert_num_queries(1):
        emails = workspace_billing_emails(workspace=team)

    assert emails == ["accounts@example.com", "co-owner@example.com", "zed-owner@example.com"]


def test_a_personal_workspace_mails_its_owner():
    user = UserFactory()
    assert workspace_billing_emails(workspace=user.personal_workspace) == [user.email]


def test_member_role_is_none_outside_the_workspace():
    team = team_workspace()
    developer = member_add(team, role=Role.DEVELOPER)
    assert workspace_member_role_get(workspace=team, user=developer) == Role.DEVELOPER
    assert workspace_member_role_get(workspace=team, user=UserFactory()) is None
    assert workspace_member_role_get(workspace=team, user=AnonymousUser()) is None
    assert workspace_member_role_get(workspace=developer.personal_workspace, user=developer) == Role.OWNER
