"""Tenant isolation, generated from the URL conf.

Every route that takes a path parameter (an object id, a provider name, a token, a code) must be
classified below. User B calls each of A's routes with A's value, with every method the view
answers: user-owned objects answer 404, staff-only routes 403, and A's object is unchanged
afterwards. A new route with a parameter that nobody classified fails ``test_every_route_is_classified``,
so a forgotten ownership check cannot reach CI silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.contrib.auth.tokens import default_token_generator
from django.urls import NoReverseMatch, URLPattern, URLResolver, get_resolver, reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from accounts.models import ApiKey, ProviderCredential
from accounts.services import api_key_reveal_link_create
from accounts.tests.factories import StaffUserFactory, api_key_for, global_key_for, personal_key_for
from billing.models import CheckoutSession
from credits.models import LedgerEntry
from credits.services import credit_grant
from organizations.tests.factories import OrganizationFactory

from .conftest import bearer_client, session_client

# Django's admin site: every URL is staff-only through the admin's own login (checked below).
ADMIN_PREFIX = "admin/"


def _walk(resolver, prefix=""):
    for pattern in resolver.url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern, route)
        elif isinstance(pattern, URLPattern):
            yield route, pattern


def parameter_routes() -> dict[str, URLPattern]:
    return {
        route: pattern
        for route, pattern in _walk(get_resolver())
        if "<" in route and not route.startswith(ADMIN_PREFIX)
    }


def view_methods(pattern: URLPattern) -> list[str]:
    """The HTTP methods the view implements (DRF/class-based views), else GET and POST."""
    view_class = getattr(pattern.callback, "view_class", None) or getattr(pattern.callback, "cls", None)
    if view_class is None:
        return ["get", "post"]
    return [m for m in ("get", "post", "put", "patch", "delete") if hasattr(view_class, m)]


@dataclass(frozen=True)
class Case:
    """How to make A's object (returns the URL kwargs and a snapshot function) and what B gets."""

    kind: str  # "owned" → 404, "staff" → 403, "public" → catalogue, "capability" → unguessable id
    setup: Callable | None = None
    auth: str = "bearer"  # how B calls it: "bearer" (API key) or "session" (pages)


def _api_key(a):
    key, _ = api_key_for(a)
    return {"key_id": key.pk}, lambda: ApiKey.objects.filter(pk=key.pk).values().get()


def _personal_provider(a):
    credential = personal_key_for(a, provider="deepseek", secret="sk-alice-personal-0123456789")
    return {
        "provider": "deepseek"
    }, lambda: ProviderCredential.objects.filter(pk=credential.pk).values().get()


def _global_provider(a):
    credential = global_key_for(provider="openai", secret="sk-operator-global-0123456789")
    return {"provider": "openai"}, lambda: ProviderCredential.objects.filter(pk=credential.pk).values().get()


def _ledger_entry(a):
    entry = credit_grant(user=a, amount=50, admin_user=StaffUserFactory())
    return {"entry_id": entry.pk}, lambda: LedgerEntry.objects.filter(user=a).count()


def _reveal(a):
    key, plaintext = api_key_for(a)
    url = api_key_reveal_link_create(api_key=key, plaintext=plaintext)
    token = url.rstrip("/").rsplit("/", 1)[-1]
    return {"token": token}, lambda: (key.reveals.filter(secret__isnull=False).count(), plaintext)


def _password_reset(a):
    # B knows A's uid but not A's token (a valid token is A's mailbox, not a URL to guess).
    uid = urlsafe_base64_encode(force_bytes(a.pk))
    bogus = default_token_generator.make_token(a)[:-3] + "xyz"
    return {"uidb64": uid, "token": bogus}, lambda: type(a).objects.get(pk=a.pk).password


def _organization(a):
    organization = OrganizationFactory()
    return {
        "organization_id": str(organization.pk)
    }, lambda: type(organization).objects.filter(pk=organization.pk).values().get()


def _stripe_checkout(a):
    checkout = CheckoutSession.objects.create(
        user=a,
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
        user=a,
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


ROUTES: dict[str, Case] = {
    "api/keys/<int:key_id>": Case("owned", _api_key),
    "api/keys/<int:key_id>/rotate": Case("owned", _api_key),
    # B's own slot for the provider: B's PUT/DELETE touch only B's key, never A's.
    "api/provider-keys/<str:provider>": Case("own-slot", _personal_provider),
    "api/admin/provider-keys/<str:provider>": Case("staff", _global_provider),
    "api/credits/transactions/<int:entry_id>": Case("owned", _ledger_entry),
    "api/admin/organizations/<str:organization_id>/link": Case("staff", _organization, auth="session"),
    "dashboard/keys/<int:key_id>/revoke/": Case("owned", _api_key, auth="session"),
    "dashboard/keys/<int:key_id>/rotate/": Case("owned", _api_key, auth="session"),
    "dashboard/keys/reveal/<str:token>/": Case("owned", _reveal, auth="session"),
    "accounts/reset/<uidb64>/<token>/": Case("token", _password_reset, auth="session"),
    # Catalogue codes (plans, packs): the same public objects for everyone.
    "billing/upgrade/<slug:code>/": Case("public"),
    "credits/buy/<slug:code>/": Case("public"),
    "payment/subscribe/<slug:plan_code>": Case("public"),
    # A model id of the route table: what it answers depends on the caller's own plan and keys.
    "api/proxy/v1/models/<path:model>": Case("public"),
    # Stand-ins for a payment provider's hosted page (DEBUG only): like Stripe's, the
    # unguessable session id is the capability; with simulated checkout off they are 404.
    "billing/simulated-checkout/<str:session_id>/": Case("capability", _stripe_checkout, auth="session"),
    "payment/chargily/simulated-checkout/<str:reference>/": Case(
        "capability", _chargily_checkout, auth="session"
    ),
}


def test_every_route_is_classified():
    found = set(parameter_routes())
    unclassified = sorted(found - set(ROUTES))
    stale = sorted(set(ROUTES) - found)
    assert not unclassified, f"routes with a path parameter nobody classified for isolation: {unclassified}"
    assert not stale, f"classified routes that no longer exist: {stale}"


def _call(client, method: str, url: str):
    if hasattr(client, "credentials"):  # APIClient
        return getattr(client, method)(url, {}, format="json")
    if method in ("get", "delete"):
        return getattr(client, method)(url)
    return getattr(client, method)(url, data={}, content_type="application/x-www-form-urlencoded")


def _url(route: str, kwargs: dict) -> str:
    pattern = parameter_routes()[route]
    names = []
    # Namespaced name: find the namespace by resolving through reverse with every namespace.
    for namespace in ("", "accounts", "billing", "credits", "billing-api", "credits-api", "organizations"):
        names.append(f"{namespace}:{pattern.name}" if namespace else pattern.name)
    for name in names:
        try:
            url = reverse(name, kwargs=kwargs)
        except NoReverseMatch:  # try the next namespace
            continue
        if url.lstrip("/").startswith(route.split("<", 1)[0]):
            return url
    raise AssertionError(f"cannot build a URL for {route}")


CHECKED = sorted(
    route for route, case in ROUTES.items() if case.kind in ("owned", "staff", "own-slot", "token")
)


@pytest.mark.django_db
@pytest.mark.parametrize("route", CHECKED)
def test_user_b_cannot_reach_user_a_objects(route, user_a, user_b, catalog):
    case = ROUTES[route]
    kwargs, snapshot = case.setup(user_a)
    before = snapshot()
    url = _url(route, kwargs)
    client = bearer_client(user_b) if case.auth == "bearer" else session_client(user_b)
    pattern = parameter_routes()[route]

    answered = 0
    for method in view_methods(pattern):
        response = _call(client, method, url)
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
        assert user_a.email not in body
        if url.startswith("/api/") and response.status_code >= 400:
            assert set(response.json()["error"]) >= {"message", "type", "code", "param"}
    assert answered, f"no method of {route} answered"
    assert snapshot() == before, f"B changed A's object through {route}"


@pytest.mark.django_db
@pytest.mark.parametrize("route", sorted(r for r, c in ROUTES.items() if c.kind == "capability"))
def test_capability_pages_are_unguessable_and_off_in_production(route, user_a, user_b, settings):
    kwargs, snapshot = ROUTES[route].setup(user_a)
    (value,) = kwargs.values()
    assert len(value) >= 32  # ≥ 128 bits of randomness in the real ids, never a row number
    settings.DEBUG = False
    settings.SIMULATED_CHECKOUT_ENABLED = False
    before = snapshot()
    client = session_client(user_b)
    url = _url(route, kwargs)

    assert client.get(url).status_code == 404
    assert client.post(url, {"action": "pay"}).status_code == 404
    assert snapshot() == before


@pytest.mark.django_db
def test_nothing_of_a_appears_in_b_lists_and_dashboards(user_a, user_b, catalog, staff):
    key_a, plaintext_a = api_key_for(user_a, name="alice-secret-project")
    personal_key_for(user_a, provider="deepseek", secret="sk-alice-personal-0123456789")
    credit_grant(user=user_a, amount=77, admin_user=staff, reason="alice-only-grant")
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
    key, _ = api_key_for(user_a)
    client = session_client(user_b)

    response = client.get(f"/admin/accounts/apikey/{key.pk}/change/")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
