"""A team workspace with one member of each role, and API clients signed in as each."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from accounts.models import Role, User, Workspace
from accounts.services.workspaces import workspace_create
from accounts.tests.factories import UserFactory, member_add

URLS = "accounts.tests.workspaces.urls"


@pytest.fixture(autouse=True)
def _workspace_urls(settings):
    """The workspace URLs wired as the project will wire them (see ``urls.py`` here)."""
    settings.ROOT_URLCONF = URLS


@dataclass
class Team:
    workspace: Workspace
    owner: User
    admin: User
    billing: User
    developer: User

    def member(self, role: str) -> User:
        return getattr(self, role)


@pytest.fixture
def team(db) -> Team:
    owner = UserFactory(email="owner@example.com")
    workspace = workspace_create(user=owner, name="Acme")
    return Team(
        workspace=workspace,
        owner=owner,
        admin=member_add(workspace, role=Role.ADMIN, user=UserFactory(email="admin@example.com")),
        billing=member_add(workspace, role=Role.BILLING, user=UserFactory(email="billing@example.com")),
        developer=member_add(workspace, role=Role.DEVELOPER, user=UserFactory(email="dev@example.com")),
    )


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def outsider(db) -> User:
    return UserFactory(email="outsider@example.com")
