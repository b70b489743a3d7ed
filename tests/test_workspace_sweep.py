"""Workspace isolation and roles, generated from the URL conf.

A "victim" team workspace holds one of everything (members of every role, a key, a provider
key, credits, an invitation). For every route and every method its view answers:

- a user who is not a member, naming the workspace (``X-Workspace`` header, or the URL's
  ``workspace_id``), gets 404 on every tenant endpoint, and changes nothing;
- a member whose role may not do the endpoint's action gets 403 (``forbidden`` with the roles
  that may, for the API) and changes nothing; a member whose role may is not refused.

The action comes from the view (``permission_required``: a string, or ``{method: action}``,
None meaning "any signed-in user, no workspace action") or, for views that declare nothing, from
``ENDPOINTS`` below. A new route that does neither fails ``test_every_endpoint_is_classified``,
so an endpoint cannot reach CI without saying who may call it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pytest
from django.test import Client

from accounts.models import ProviderCredential, Role, User, Workspace
from accounts.roles import ROLE_PERMISSIONS, role_can, roles_allowed
from accounts.services import api_key_create, provider_credential_set
from accounts.services.workspaces import invitation_create, membership_create, workspace_create
from accounts.tests.factories import UserFactory
from credits.services import credit_grant
from notifications.services import webhook_endpoint_create

from . import sweep
from .conftest import bearer_client

# Kinds of endpoint that act on no workspace of the caller's choosing.
PUBLIC = "public"  # the same for everyone, signed in or not (catalogue, guide, schema, health)
PERSON = "person"  # about the signed-in person (sign-up, log-in, their token, a reset link)
STAFF = "staff"  # the operator's
KEY = "key"  # a proxied call: the proxy key's own workspace, whatever the header says
SIGNED = "signed"  # a webhook or a report: a signature or a token, no user
CAPABILITY = "capability"  # the unguessable id in the URL is the permission (simulated checkouts)
KINDS = {PUBLIC, PERSON, STAFF, KEY, SIGNED, CAPABILITY}

# Endpoints whose views declare nothing: a kind for the whole route, or the action per method.
# (Keys and member routes act on another member's object: the sweep's key is the owner's.)
ENDPOINTS: dict[str, str | dict[str, str]] = {
    "health": PUBLIC,
    "favicon.ico": PUBLIC,
    "": PUBLIC,
    "^api/": PUBLIC,  # the JSON 404 of any other /api/ URL
    "api/schema/": PUBLIC,
    "api/docs/": PUBLIC,
    "api/redoc/": PUBLIC,
    "docs/": PUBLIC,  # the guide: a signed-in member's own key prefix in the examples
    "pricing/": PUBLIC,
    "i18n/setlang/": PERSON,  # the language cookie (and the session of a signed-in person): theirs alone
    "api/billing/plans": PUBLIC,
    "api/credits/packs": PUBLIC,
    "billing/cancel/": PUBLIC,  # "you cancelled the checkout": nothing of a workspace
    "metrics": SIGNED,
    "api/billing/webhook": SIGNED,
    "payment/webhook/chargily": SIGNED,
    "api/usage-report": SIGNED,
    "api/admin/dashboard": STAFF,
    "api/credits/grants": STAFF,
    "api/admin/provider-keys/<str:provider>": STAFF,
    "api/admin/organizations": STAFF,
    "api/admin/organizations/<str:organization_id>/link": STAFF,
    "api/auth/register": PERSON,
    "api/auth/token": PERSON,
    "accounts/signup/": PERSON,
    "accounts/login/": PERSON,
    "accounts/logout/": PERSON,
    "accounts/password-reset/": PERSON,
    "accounts/password-reset/done/": PERSON,
    "accounts/reset/<uidb64>/<token>/": PERSON,
    "accounts/reset/done/": PERSON,
    "dashboard/keys/reveal/<str:token>/": PERSON,  # the one-time link of the key's creator
    "accounts/verify-email/<str:token>/": PERSON,  # the mailed link confirming one's address
    "accounts/verify-email/resend/": PERSON,
    "billing/simulated-checkout/<str:session_id>/": CAPABILITY,
    "payment/chargily/simulated-checkout/<str:reference>/": CAPABILITY,
    "api/proxy/deepseek/chat": KEY,
    "api/proxy/instantly/send": KEY,
    "api/proxy/v1/chat/completions": KEY,
    "api/proxy/v1/messages": KEY,
    "api/proxy/v1/responses": KEY,
    "api/proxy/v1/embeddings": KEY,
    "api/proxy/v1/models": KEY,
    "api/proxy/v1/models/<path:model>": KEY,
    "api/v2/chat": KEY,
    "api/keys": {"get": "keys.read", "post": "keys.create"},
    # one's own key: keys.create (delete), any member (patch: its limits)
    "api/keys/<int:key_id>": {"delete": "keys.manage_any", "patch": "limits.manage"},
    "api/keys/<int:key_id>/rotate": {"post": "keys.manage_any"},
    "dashboard/keys/": {"post": "keys.create"},
    "dashboard/keys/<int:key_id>/revoke/": {"post": "keys.manage_any"},
    "dashboard/keys/<int:key_id>/rotate/": {"post": "keys.manage_any"},
    "api/provider-keys": {"get": "provider_keys.read"},
    "api/provider-keys/<str:provider>": {
        "get": "provider_keys.read",
        "put": "provider_keys.manage",
        "delete": "provider_keys.manage",
    },
    "accounts/profile/": {"get": "workspace.read", "post": "provider_keys.manage"},
    "api/proxy/usage": KEY,  # proxy keys only (a session answers 401)
    "billing/upgrade/<slug:code>/": {"get": "billing.manage", "post": "billing.manage"},
    "billing/portal/": {"get": "billing.manage", "post": "billing.manage"},
    "billing/simulated-portal/": {"get": "billing.read", "post": "billing.manage"},
    "billing/success/": {"get": "workspace.read", "post": "workspace.read"},  # the plan, not the bill
    "credits/": {"get": "usage.read"},
    "credits/buy/<slug:code>/": {"get": "billing.manage", "post": "billing.manage"},
    "credits/modal/dismiss/": PERSON,  # hides the modal for this browser session
    "credits/modal/seen/": {"post": "usage.read"},
}

# The body a method needs to reach its permission check, where an empty one cannot (a form
# that does several things decides which from its fields).
BODIES: dict[tuple[str, str], dict] = {
    ("accounts/profile/", "post"): {"provider": "deepseek", "scope": "workspace", "action": "delete"},
    ("credits/modal/seen/", "post"): {"kind": "modal_view"},
}


@dataclass
class Team:
    """The victim: a team workspace with a member of every role and one of every object."""

    workspace: Workspace
    owner: User
    members: dict[str, User]  # role -> member
    params: dict[str, object] = field(default_factory=dict)  # URL parameter -> value


@pytest.fixture
def simulated(settings):
    """The offline stand-ins for the payment providers' pages are live, so they are swept too."""
    settings.DEBUG = True
    settings.STRIPE_SECRET_KEY = ""
    settings.CHARGILY_API_KEY = ""
    settings.SIMULATED_CHECKOUT_ENABLED = True
    settings.SITE_URL = "http://testserver"
    settings.CHECKOUT_REDIRECT_HOSTS = ["testserver"]
    return settings


@pytest.fixture
def team(db, catalog, staff, simulated) -> Team:
    owner = UserFactory(email="owner@victim.example")
    workspace = workspace_create(user=owner, name="Victim team")
    members = {}
    for role in (Role.ADMIN, Role.BILLING, Role.DEVELOPER):
        members[role] = UserFactory(email=f"{role}@victim.example")
        membership_create(workspace=workspace, user=members[role], role=role, actor=staff)
    target = UserFactory(email="target@victim.example")  # the member the member routes act on
    membership_create(workspace=workspace, user=target, role=Role.DEVELOPER, actor=staff)
    key, _plaintext = api_key_create(workspace=workspace, created_by=owner, name="victim-owner-key")
    provider_credential_set(
        scope=ProviderCredential.Scope.WORKSPACE,
        provider="deepseek",
        secret="sk-victim-team-0123456789",
        workspace=workspace,
        actor=owner,
    )
    entry = credit_grant(workspace=workspace, amount=50, admin_user=staff)
    invitation, _url = invitation_create(
        workspace=workspace, actor=owner, email="invitee@victim.example", role=Role.DEVELOPER
    )
    webhook, _secret = webhook_endpoint_create(
        workspace=workspace, actor=owner, url="https://93.184.215.14/victim-hook", events=["credits.low"]
    )
    params = {
        "endpoint_id": webhook.pk,
        "workspace_id": workspace.pk,
        "key_id": key.pk,
        "provider": "deepseek",
        "entry_id": entry.pk,
        "user_id": target.pk,
        "invitation_id": invitation.pk,
        # Parameters that name nothing of a workspace.
        "code": "pro",
        "plan_code": "pro",
        "model": "gpt-4o-mini",
        "token": "t" * 43,
        "uidb64": "MQ",
        "session_id": "cs_sim_" + "0" * 32,
        "reference": "chg_" + "0" * 32,
        "organization_id": str(uuid.uuid4()),
        "call_id": str(uuid.uuid4()),  # a call of nobody's: a member gets 404, not a 403 or 500
    }
    return Team(workspace=workspace, owner=owner, members=members, params=params)


def _action(route: str, method: str):
    """The endpoint's action (a string of ``accounts.roles``), a kind, None, or UNDECLARED."""
    pattern = sweep.routes()[route]
    declared = sweep.declared_action(pattern, method)
    if declared is not sweep.UNDECLARED:
        return PERSON if declared is None else declared
    entry = ENDPOINTS.get(route, sweep.UNDECLARED)
    if isinstance(entry, dict):
        return entry.get(method, sweep.UNDECLARED)
    return entry


def _declares_itself(pattern) -> bool:
    cls = sweep.view_class(pattern)
    return hasattr(cls, "permission_required") or hasattr(pattern.callback, "permission_required")


def test_every_endpoint_is_classified():
    found = sweep.routes()
    problems = []
    for route, pattern in sorted(found.items()):
        if _declares_itself(pattern):
            if route in ENDPOINTS:
                problems.append(f"{route}: its view declares permission_required; drop it from ENDPOINTS")
            methods = sweep.view_methods(pattern) if sweep.view_class(pattern) else []
            for method in methods:
                if sweep.declared_action(pattern, method) is sweep.UNDECLARED:
                    problems.append(f"{route} {method.upper()}: permission_required does not name it")
        elif route not in ENDPOINTS:
            problems.append(f"{route}: declares no permission_required and is not in ENDPOINTS")
    problems += [f"{route}: in ENDPOINTS but no such route" for route in sorted(set(ENDPOINTS) - set(found))]
    for route in ENDPOINTS:
        for method in sweep.MUTATING + ("get",):
            action = _action(route, method) if route in found else None
            if isinstance(action, str) and action not in KINDS and action not in ROLE_PERMISSIONS:
                problems.append(f"{route} {method.upper()}: unknown action {action!r}")
    assert not problems, "\n".join(problems)


def _answered(response) -> bool:
    return response.status_code != 405


def _calls(route: str):
    """(method, action) for every method of the route, with its URL filled from ``team``."""
    pattern = sweep.routes()[route]
    for method in sweep.view_methods(pattern):
        yield method, _action(route, method)


def _request(client, route, method, team, **headers):
    pattern = sweep.routes()[route]
    url = sweep.url_build(route, team.params)
    body = BODIES.get((route, method))
    if body is not None:
        if sweep.is_api(pattern):
            return getattr(client, method)(url, body, content_type="application/json", **headers)
        return getattr(client, method)(url, body, **headers)
    return sweep.call(client, pattern, method, url, **headers)


# What a non-member must never read in a body.
VICTIM_MARKERS = ("Victim team", "victim-owner-key", "owner@victim.example", "target@victim.example")


ALL_ROUTES = sorted(sweep.routes())


@pytest.mark.django_db
@pytest.mark.parametrize("route", ALL_ROUTES)
def test_a_non_member_naming_the_workspace_gets_404_and_changes_nothing(route, team, user_b):
    before = sweep.workspace_state(team.workspace)
    client = Client()
    client.force_login(user_b)
    header = {"HTTP_X_WORKSPACE": str(team.workspace.pk)}

    for method, action in _calls(route):
        response = _request(client, route, method, team, **header)
        if not _answered(response):
            continue
        body = response.content.decode(errors="replace")
        where = (method.upper(), route, response.status_code, body[:300])
        assert action is not sweep.UNDECLARED, f"{method.upper()} {route} answers but declares nothing"
        assert response.status_code != 500, where
        if action not in KINDS:  # a tenant endpoint: the workspace is not disclosed
            assert response.status_code == 404, where
            if sweep.is_api(sweep.routes()[route]):
                assert response.json()["error"]["code"] == "not_found", where
        elif action == STAFF:
            assert response.status_code in (302, 401, 403), where
        for marker in VICTIM_MARKERS:
            assert marker not in body, (marker, *where)
    assert sweep.workspace_state(team.workspace) == before, f"a non-member changed the workspace via {route}"


TENANT_ROUTES = sorted(
    route
    for route in ALL_ROUTES
    if any(
        isinstance(action, str) and action not in KINDS
        for _method, action in ((m, _action(route, m)) for m in sweep.view_methods(sweep.routes()[route]))
    )
)


def _member_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("route", TENANT_ROUTES)
def test_a_role_that_may_not_act_gets_403_and_one_that_may_is_let_through(route, team):
    header = {"HTTP_X_WORKSPACE": str(team.workspace.pk)}
    api = sweep.is_api(sweep.routes()[route])
    checked = 0
    for method, action in _calls(route):
        if not isinstance(action, str) or action in KINDS:
            continue
        refused = [role for role in team.members if not role_can(role, action)]
        allowed = [role for role in team.members if role_can(role, action)]
        for role in refused:  # first: they must leave the workspace as it was
            before = sweep.workspace_state(team.workspace)
            response = _request(_member_client(team.members[role]), route, method, team, **header)
            if not _answered(response):
                break
            where = (role, method.upper(), route, response.status_code, response.content[:300])
            assert response.status_code == 403, where
            if api:
                error = response.json()["error"]
                assert error["code"] == "forbidden", where
                assert error["required_role"] == roles_allowed(action), where
            assert sweep.workspace_state(team.workspace) == before, (
                f"{role} changed the workspace via {where}"
            )
            checked += 1
        for role in allowed:
            response = _request(_member_client(team.members[role]), route, method, team, **header)
            if not _answered(response):
                break
            body = b"(streamed)" if response.streaming else response.content[:300]  # a CSV export
            where = (role, method.upper(), route, response.status_code, body)
            assert response.status_code != 500, where
            refused_anyway = response.status_code == 403 and (
                not api or response.json()["error"]["code"] == "forbidden"
            )
            assert not refused_anyway, f"{action} allows {role}, yet: {where}"
            checked += 1
    assert checked, f"no method of {route} was checked"


@pytest.mark.django_db(transaction=True)  # /api/proxy/usage reads on its own connection
def test_a_proxy_key_acts_on_its_own_workspace_whatever_the_header_names(team, user_b):
    client = bearer_client(user_b)
    header = {"HTTP_X_WORKSPACE": str(team.workspace.pk)}

    for path in ("/api/keys", "/api/proxy/usage", "/api/credits/balance", "/api/workspaces"):
        response = client.get(path, **header)

        assert response.status_code == 200, (path, response.content[:300])
        for marker in VICTIM_MARKERS:
            assert marker not in response.content.decode(), (marker, path)
    assert client.get("/api/credits/balance", **header).json()["balance"] == 0  # the team has 50


@pytest.mark.django_db
def test_a_proxy_key_acts_with_the_role_of_the_member_who_made_it(team):
    developer = bearer_client(team.members[Role.DEVELOPER], workspace=team.workspace)
    owner = bearer_client(team.owner, workspace=team.workspace)

    refused = developer.get("/api/provider-keys")

    assert refused.status_code == 403
    assert refused.json()["error"]["required_role"] == roles_allowed("provider_keys.read")
    assert owner.get("/api/provider-keys").status_code == 200
    assert developer.get("/api/credits/balance").json()["balance"] == 50  # the team's credits
