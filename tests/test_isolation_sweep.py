"""Tenant isolation, generated from the URL conf.

Every route that takes a path parameter (an object id, a workspace id, a provider name, a
token, a code) must be classified below. User B, acting in their own workspace, calls each of
A's routes with A's value, with every method the view answers: objects of A's workspaces answer
404, staff-only routes 403, and A's workspaces are unchanged afterwards. A new route with a
parameter that nobody classified fails ``test_every_route_is_classified``, so a forgotten
ownership check cannot reach CI silently. (``test_workspace_sweep`` walks every route the other
way: B naming A's workspace, and A's members whose role may not act.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.contrib.auth.tokens import default_token_generator
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from accounts.models import Membership, ProviderCredential, Role
from accounts.services import api_key_create, api_key_reveal_link_create, provider_credential_set
from accounts.services.workspaces import invitation_create, membership_create, workspace_create
from accounts.tests.factories import StaffUserFactory, UserFactory
from billing.models import CheckoutSession
from credits.services import credit_grant
from notifications.services import webhook_endpoint_create
from organizations.tests.factories import OrganizationFactory
from proxy.models import UsageEvent

from . import sweep
from .conftest import bearer_client, session_client


@dataclass(frozen=True)
class Case:
    """What B gets for A's value: "owned" → 404, "staff" → 403, "own-slot" → B's own object,
    "token" → a secret B does not have, "invitation" → A's invitation link, "public" →
    catalogue, "capability" → unguessable id (tested apart)."""

    kind: str
    auth: str = "bearer"  # how B calls it: "bearer" (API key) or "session" (pages)


@dataclass
class Alice:
    """A's objects: a key, a provider key and credits in her personal workspace, a team
    workspace with a member and a pending invitation; ``kwargs`` fills every route."""

    kwargs: dict
    snapshot: Callable
    accept_token: str  # the invitee's (mailed, never B's)
    bogus_reset_token: str


def _alice(a) -> Alice:
    personal = a.personal_workspace
    key, plaintext = api_key_create(workspace=personal, created_by=a, name="alice-key")
    provider_credential_set(
        scope=ProviderCredential.Scope.WORKSPACE,
        provider="deepseek",
        secret="sk-alice-personal-0123456789",
        workspace=personal,
        actor=a,
    )
    global_key = provider_credential_set(
        scope=ProviderCredential.Scope.GLOBAL, provider="openai", secret="sk-operator-global-0123456789"
    )
    staff = StaffUserFactory()
    entry = credit_grant(workspace=personal, amount=50, admin_user=staff)
    team = workspace_create(user=a, name="Alice team")
    colleague = UserFactory(email="colleague@example.com")
    membership_create(workspace=team, user=colleague, role=Role.DEVELOPER, actor=staff)
    invitation, accept_url = invitation_create(
        workspace=team, actor=a, email="invitee@example.com", role=Role.DEVELOPER
    )
    reveal_url = api_key_reveal_link_create(api_key=key, plaintext=plaintext)
    organization = OrganizationFactory()
    webhook, _secret = webhook_endpoint_create(
        workspace=personal, actor=a, url="https://93.184.215.14/alice-hook", events=["credits.low"]
    )
    kwargs = {
        "endpoint_id": webhook.pk,
        "key_id": key.pk,
        "provider": "deepseek",
        "entry_id": entry.pk,
        "workspace_id": team.pk,
        "user_id": colleague.pk,
        "invitation_id": invitation.pk,
        "token": reveal_url.rstrip("/").rsplit("/", 1)[-1],
        # B knows A's uid but not A's reset token (that is A's mailbox, not a URL to guess).
        "uidb64": urlsafe_base64_encode(force_bytes(a.pk)),
        "organization_id": str(organization.pk),
        "code": "pro",
        "plan_code": "pro",
        "model": "gpt-4o-mini",
        "call_id": UsageEvent.objects.create(
            workspace=personal, api_key=key, service="router", endpoint="/v1/chat", status_code=200
        ).call_id,
    }

    def snapshot():
        return (
            sweep.workspace_state(personal),
            sweep.workspace_state(team),
            type(a).objects.filter(pk=a.pk).values().get(),  # password, active, verified address…
            type(global_key).objects.filter(pk=global_key.pk).values().get(),
            type(organization).objects.filter(pk=organization.pk).values().get(),
            key.reveals.filter(secret__isnull=False).count(),
        )

    return Alice(
        kwargs=kwargs,
        snapshot=snapshot,
        accept_token=accept_url.rstrip("/").rsplit("/", 1)[-1],
        bogus_reset_token=default_token_generator.make_token(a)[:-3] + "xyz",
    )


def _stripe_checkout(a):
    checkout = CheckoutSession.objects.create(
        workspace=a.personal_workspace,
        created_by=a,
        kind="plan",
        mode="subscription",
        line_item={},
        success_url="http://127.0.0.1/ok",
        cancel_url="http://127.0.0.1/no",
        is_simulated=True,
        checkout_reference="cs_sim_" + "a1b2c3d4" * 4,
    )
    return {
        "session_id": checkout.checkout_reference
    }, lambda: CheckoutSession.objects.filter(pk=checkout.pk).values("status").get()


def _chargily_checkout(a):
    checkout = CheckoutSession.objects.create(
        workspace=a.personal_workspace,
        created_by=a,
        kind="plan",
        mode="payment",
        gateway="chargily",
        line_item={},
        success_url="http://127.0.0.1/ok",
        cancel_url="http://127.0.0.1/no",
        is_simulated=True,
        checkout_reference="chg_" + "a1b2c3d4" * 4,
    )
    return {
        "reference": checkout.checkout_reference
    }, lambda: CheckoutSession.objects.filter(pk=checkout.pk).values("status").get()


CAPABILITIES = {
    "billing/simulated-checkout/<str:session_id>/": _stripe_checkout,
    "payment/chargily/simulated-checkout/<str:reference>/": _chargily_checkout,
}

ROUTES: dict[str, Case] = {
    "api/keys/<int:key_id>": Case("owned"),
    "api/keys/<int:key_id>/rotate": Case("owned"),
    # B's own slot for the provider: B's PUT/DELETE touch only B's workspace's key, never A's.
    "api/provider-keys/<str:provider>": Case("own-slot"),
    "api/admin/provider-keys/<str:provider>": Case("staff"),
    "api/credits/transactions/<int:entry_id>": Case("owned"),
    "api/admin/organizations/<str:organization_id>/link": Case("staff", auth="session"),
    "dashboard/keys/<int:key_id>/revoke/": Case("owned", auth="session"),
    "dashboard/keys/<int:key_id>/rotate/": Case("owned", auth="session"),
    "dashboard/keys/reveal/<str:token>/": Case("owned", auth="session"),
    "activity/<uuid:call_id>/": Case("owned", auth="session"),  # one of A's calls
    "accounts/reset/<uidb64>/<token>/": Case("token", auth="session"),
    "accounts/verify-email/<str:token>/": Case("token", auth="session"),
    # A's team, named in the URL: B is not a member.
    "api/workspaces/<int:workspace_id>": Case("owned"),
    "api/workspaces/<int:workspace_id>/members": Case("owned"),
    "api/workspaces/<int:workspace_id>/members/<int:user_id>": Case("owned"),
    "api/workspaces/<int:workspace_id>/invitations": Case("owned"),
    "api/workspaces/<int:workspace_id>/invitations/<int:invitation_id>": Case("owned"),
    "api/workspaces/<int:workspace_id>/audit": Case("owned"),
    # A's webhook endpoints (notifications): B's own workspace does not hold them.
    "api/webhooks/<int:endpoint_id>": Case("owned"),
    "api/webhooks/<int:endpoint_id>/rotate": Case("owned"),
    "api/webhooks/<int:endpoint_id>/test": Case("owned"),
    "api/webhooks/<int:endpoint_id>/deliveries": Case("owned"),
    "webhooks/<int:endpoint_id>/test/": Case("owned", auth="session"),
    "webhooks/<int:endpoint_id>/rotate/": Case("owned", auth="session"),
    "webhooks/<int:endpoint_id>/toggle/": Case("owned", auth="session"),
    "webhooks/<int:endpoint_id>/delete/": Case("owned", auth="session"),
    "workspaces/<int:workspace_id>/members/": Case("owned", auth="session"),
    "workspaces/<int:workspace_id>/audit/": Case("owned", auth="session"),
    "workspaces/<int:workspace_id>/members/invite/": Case("owned", auth="session"),
    "workspaces/<int:workspace_id>/members/<int:user_id>/role/": Case("owned", auth="session"),
    "workspaces/<int:workspace_id>/members/<int:user_id>/limits/": Case("owned", auth="session"),
    "workspaces/<int:workspace_id>/members/<int:user_id>/remove/": Case("owned", auth="session"),
    "workspaces/<int:workspace_id>/invitations/<int:invitation_id>/revoke/": Case("owned", auth="session"),
    # The invitation's link is the invitee's; another signed-in user cannot use it.
    "invitations/accept/<str:token>/": Case("invitation", auth="session"),
    # Catalogue codes (plans, packs): the same public objects for everyone.
    "billing/upgrade/<slug:code>/": Case("public"),
    "credits/buy/<slug:code>/": Case("public"),
    "payment/subscribe/<slug:plan_code>": Case("public"),
    # A model id of the route table: what it answers depends on the caller's own plan and keys.
    "api/proxy/v1/models/<path:model>": Case("public"),
    # Stand-ins for a payment provider's hosted page (DEBUG only): like Stripe's, the
    # unguessable session id is the capability; with simulated checkout off they are 404.
    "billing/simulated-checkout/<str:session_id>/": Case("capability", auth="session"),
    "payment/chargily/simulated-checkout/<str:reference>/": Case("capability", auth="session"),
}


def test_every_route_is_classified():
    found = set(sweep.parameter_routes())
    unclassified = sorted(found - set(ROUTES))
    stale = sorted(set(ROUTES) - found)
    assert not unclassified, f"routes with a path parameter nobody classified for isolation: {unclassified}"
    assert not stale, f"classified routes that no longer exist: {stale}"


CHECKED = sorted(
    route
    for route, case in ROUTES.items()
    if case.kind in ("owned", "staff", "own-slot", "token", "invitation")
)


def _kwargs(route: str, alice: Alice) -> dict:
    kwargs = dict(alice.kwargs)
    if route.startswith("accounts/reset/"):
        kwargs["token"] = alice.bogus_reset_token
    if route.startswith("accounts/verify-email/"):
        kwargs["token"] = alice.bogus_reset_token  # A's real link is in A's mailbox
    if route.startswith("invitations/accept/"):
        kwargs["token"] = alice.accept_token
    return kwargs


@pytest.mark.django_db
@pytest.mark.parametrize("route", CHECKED)
def test_user_b_cannot_reach_user_a_objects(route, user_a, user_b, catalog):
    case = ROUTES[route]
    alice = _alice(user_a)
    before = alice.snapshot()
    pattern = sweep.parameter_routes()[route]
    url = sweep.url_build(route, _kwargs(route, alice))
    client = bearer_client(user_b) if case.auth == "bearer" else session_client(user_b)

    answered = 0
    for method in sweep.view_methods(pattern):
        response = sweep.call(client, pattern, method, url)
        body = response.content.decode(errors="replace")
        if response.status_code == 405:  # a function view that does not take this method
            continue
        answered += 1
        if case.kind == "owned":
            assert response.status_code == 404, (method, url, response.status_code, body[:300])
        elif case.kind == "staff":
            assert response.status_code == 403, (method, url, response.status_code, body[:300])
        elif case.kind == "own-slot":
            assert response.status_code in (200, 204, 400, 404), (method, url, response.status_code)
        elif case.kind == "token":
            assert response.status_code in (200, 302, 404), (method, url, response.status_code)
            assert "new_password1" not in body  # no form to set A's password
        elif case.kind == "invitation":
            assert response.status_code in (200, 302, 403, 404, 409, 410), (method, url, response.status_code)
            assert "invitee@example.com" not in body
        for marker in (user_a.email, "Alice team", "alice-key", "colleague@example.com"):
            assert marker not in body, (marker, method, url)
        if url.startswith("/api/") and response.status_code >= 400:
            assert set(response.json()["error"]) >= {"message", "type", "code", "param"}
    assert answered, f"no method of {route} answered"
    assert alice.snapshot() == before, f"B changed A's objects through {route}"
    assert not Membership.objects.filter(user=user_b).exclude(workspace=user_b.personal_workspace).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("route", sorted(r for r, c in ROUTES.items() if c.kind == "capability"))
def test_capability_pages_are_unguessable_and_off_in_production(route, user_a, user_b, settings):
    kwargs, snapshot = CAPABILITIES[route](user_a)
    (value,) = kwargs.values()
    assert len(value) >= 32  # ≥ 128 bits of randomness in the real ids, never a row number
    settings.DEBUG = False
    settings.SIMULATED_CHECKOUT_ENABLED = False
    before = snapshot()
    client = session_client(user_b)
    url = sweep.url_build(route, kwargs)

    assert client.get(url).status_code == 404
    assert client.post(url, {"action": "pay"}).status_code == 404
    assert snapshot() == before


@pytest.mark.django_db
def test_nothing_of_a_appears_in_b_lists_and_dashboards(user_a, user_b, catalog, staff):
    workspace_a = user_a.personal_workspace
    key_a, plaintext_a = api_key_create(workspace=workspace_a, created_by=user_a, name="alice-secret-project")
    provider_credential_set(
        scope=ProviderCredential.Scope.WORKSPACE,
        provider="deepseek",
        secret="sk-alice-personal-0123456789",
        workspace=workspace_a,
        actor=user_a,
    )
    credit_grant(workspace=workspace_a, amount=77, admin_user=staff, reason="alice-only-grant")
    client = bearer_client(user_b)
    pages = session_client(user_b)

    api_bodies = [
        client.get(path).content.decode()
        for path in (
            "/api/keys",
            "/api/provider-keys",
            "/api/credits/balance",
            "/api/credits/transactions",
            "/api/billing/subscription",
            "/api/proxy/usage",
        )
    ]
    page_bodies = [
        pages.get(path).content.decode() for path in ("/dashboard/", "/credits/", "/accounts/profile/")
    ]

    for body in api_bodies + page_bodies:
        for marker in ("alice", key_a.prefix, plaintext_a, "sk-alice", "alice-only-grant"):
            assert marker not in body
    assert client.get("/api/credits/balance").json()["balance"] == 0


@pytest.mark.django_db
def test_admin_site_is_staff_only_with_a_real_object(user_a, user_b):
    key, _ = api_key_create(workspace=user_a.personal_workspace, created_by=user_a, name="alice-key")
    client = session_client(user_b)

    for url in (
        f"/admin/accounts/apikey/{key.pk}/change/",
        f"/admin/accounts/workspace/{user_a.personal_workspace.pk}/change/",
    ):
        response = client.get(url)

        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
