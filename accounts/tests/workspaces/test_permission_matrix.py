"""The permission matrix, generated from ``accounts.workspace_urls``: every method of every
workspace route declares the action it needs (``permission_required``), and each of the four
roles is refused (403) exactly where ``accounts.roles.ROLE_PERMISSIONS`` says.

A new route without a declaration fails ``test_every_method_declares_its_permission``; a new
route without a case below fails ``test_every_route_has_a_matrix_case``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import URLPattern, reverse

from accounts import workspace_urls
from accounts.models import Role
from accounts.roles import ROLE_PERMISSIONS, role_can
from accounts.services.workspaces import invitation_create
from accounts.tests.factories import member_add

from .conftest import client_for

METHODS = ("get", "post", "put", "patch", "delete")
ROLES = [role.value for role in Role]


def _view_of(pattern: URLPattern):
    callback = pattern.callback
    return getattr(callback, "view_class", None) or getattr(callback, "cls", None) or callback


def _implemented(pattern: URLPattern) -> list[str]:
    """Methods a class-based view implements; for a function view, what it declares (the
    405 test below checks it answers nothing else)."""
    view = _view_of(pattern)
    if isinstance(view, type):
        return [method for method in METHODS if hasattr(view, method)]
    return list(getattr(view, "permission_required", {}))


def _declared(pattern: URLPattern) -> dict:
    return getattr(_view_of(pattern), "permission_required", None)


def test_every_method_declares_its_permission():
    for pattern in workspace_urls.urlpatterns:
        declared = _declared(pattern)
        assert declared is not None, f"{pattern.name} declares no permission_required"
        for method in _implemented(pattern):
            assert method in declared, f"{pattern.name} {method.upper()} declares no permission"
            action = declared[method]
            if action is None:  # any signed-in user: only where no workspace is in the URL
                assert "workspace_id" not in str(pattern.pattern), f"{pattern.name} {method.upper()}"
            else:
                assert action in ROLE_PERMISSIONS, f"{pattern.name}: unknown action {action}"


def _matrix():
    for pattern in workspace_urls.urlpatterns:
        for method, action in _declared(pattern).items():
            if action is not None:
                yield pattern.name, method, action


MATRIX = sorted(_matrix())


def _other_developer(team):
    return member_add(team.workspace, role=Role.DEVELOPER)


def _invitation(team):
    invitation, _ = invitation_create(
        workspace=team.workspace, actor=team.owner, email="invited@example.com", role="developer"
    )
    return invitation


# URL name -> team -> (extra URL kwargs, body). Targets are never the caller (that would be
# leaving, which needs no permission) and never an owner (a rule stricter than the table).
CASES: dict[str, Callable] = {
    "api-workspace": lambda team: ({}, {"name": "Renamed"}),
    "api-workspace-members": lambda team: ({}, None),
    "api-workspace-member": lambda team: ({"user_id": _other_developer(team).pk}, {"role": "billing"}),
    "api-workspace-invitations": lambda team: ({}, {"email": "matrix@example.com", "role": "developer"}),
    "api-workspace-invitation": lambda team: ({"invitation_id": _invitation(team).pk}, None),
    "api-workspace-audit": lambda team: ({}, None),
    "workspace-members": lambda team: ({}, None),
    "workspace-audit": lambda team: ({}, None),
    "workspace-invite": lambda team: ({}, {"email": "matrix@example.com", "role": "developer"}),
    "workspace-member-role": lambda team: ({"user_id": _other_developer(team).pk}, {"role": "billing"}),
    "workspace-member-limits": lambda team: ({"user_id": _other_developer(team).pk}, {"unit": "none"}),
    "workspace-member-remove": lambda team: ({"user_id": _other_developer(team).pk}, {}),
    "workspace-invitation-revoke": lambda team: ({"invitation_id": _invitation(team).pk}, {}),
}


def test_every_route_has_a_matrix_case():
    assert sorted({name for name, _, _ in MATRIX}) == sorted(CASES)


def _call(user, name: str, method: str, kwargs: dict, body):
    url = reverse(f"accounts:{name}", kwargs=kwargs)
    if name.startswith("api-"):
        return getattr(client_for(user), method)(url, body, format="json")
    client = Client()
    client.force_login(user)
    return client.get(url) if method == "get" else getattr(client, method)(url, body or {})


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("name", "method", "action"), MATRIX)
def test_each_role_is_refused_exactly_where_the_table_says(team, role, name, method, action):
    extra, body = CASES[name](team)
    response = _call(team.member(role), name, method, {"workspace_id": team.workspace.pk, **extra}, body)

    if role_can(role, action):
        assert response.status_code < 400, (role, name, method, response.status_code, response.content[:300])
    else:
        assert response.status_code == 403, (role, name, method, response.status_code)
        if name.startswith("api-"):
            assert response.json()["error"]["required_role"] == [
                r for r in ("owner", "admin", "billing", "developer") if role_can(r, action)
            ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "pattern", [p for p in workspace_urls.urlpatterns if not isinstance(_view_of(p), type)]
)
def test_pages_answer_405_to_undeclared_methods(team, pattern):
    kwargs = {
        "workspace_id": team.workspace.pk,
        "user_id": team.developer.pk,
        "invitation_id": 1,
        "token": "t" * 43,
    }
    names = [name for name in pattern.pattern.converters]
    url = reverse(f"accounts:{pattern.name}", kwargs={name: kwargs[name] for name in names})
    client = Client()
    client.force_login(team.owner)
    for method in set(METHODS) - set(_declared(pattern)):
        assert getattr(client, method)(url).status_code == 405, (pattern.name, method)
