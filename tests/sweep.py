"""The URL conf as data, for the sweeps that walk it (``test_isolation_sweep``,
``test_workspace_sweep``): every route with its view, the methods it implements, the action a
view declares (``permission_required``), a URL built from a route and its arguments, and a
snapshot of everything a workspace holds (to prove a refused request changed nothing)."""

from __future__ import annotations

import re

from django.apps import apps
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.views import APIView

from accounts.models import Workspace

# Django's admin site: every URL is staff-only through the admin's own login (checked apart).
ADMIN_PREFIX = "admin/"
MUTATING = ("post", "put", "patch", "delete")
UNDECLARED = object()  # a view that says nothing about the action it needs
_CONVERTER = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")


def _walk(resolver, prefix=""):
    for pattern in resolver.url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern, route)
        elif isinstance(pattern, URLPattern):
            yield route, pattern


def routes() -> dict[str, URLPattern]:
    """Every route outside the admin, with the pattern that answers it (the first one: a later
    pattern with the same route is shadowed and never runs)."""
    found: dict[str, URLPattern] = {}
    for route, pattern in _walk(get_resolver()):
        if not route.startswith(ADMIN_PREFIX):
            found.setdefault(route, pattern)
    return found


def parameter_routes() -> dict[str, URLPattern]:
    return {route: pattern for route, pattern in routes().items() if "<" in route}


def view_class(pattern: URLPattern):
    return getattr(pattern.callback, "view_class", None) or getattr(pattern.callback, "cls", None)


def view_methods(pattern: URLPattern) -> list[str]:
    """The HTTP methods the view implements (class-based views), else GET and POST (a function
    view that refuses one answers 405, which the sweeps skip)."""
    cls = view_class(pattern)
    if cls is None:
        return ["get", "post"]
    return [m for m in ("get", "post", "put", "patch", "delete") if hasattr(cls, m)]


def declared_action(pattern: URLPattern, method: str):
    """What the view declares its ``method`` needs: an action of ``accounts.roles``, None (any
    signed-in user: no workspace action), or ``UNDECLARED``. ``permission_required`` is a string
    (every method) or a ``{method: action}`` dict, on the view class or the view function."""
    cls = view_class(pattern)
    declared = getattr(cls, "permission_required", UNDECLARED) if cls is not None else UNDECLARED
    if declared is UNDECLARED:
        declared = getattr(pattern.callback, "permission_required", UNDECLARED)
    if isinstance(declared, dict):
        return declared.get(method, UNDECLARED)
    return declared


def route_parameters(route: str) -> list[str]:
    return [match["name"] for match in _CONVERTER.finditer(route)]


def url_build(route: str, kwargs: dict) -> str:
    """The URL of ``route`` with its parameters filled from ``kwargs`` (a regex route: its
    literal prefix)."""
    return "/" + _CONVERTER.sub(lambda match: str(kwargs[match["name"]]), route.lstrip("^").rstrip("$"))


def is_api(pattern: URLPattern) -> bool:
    """A DRF view (JSON errors) rather than a page."""
    cls = view_class(pattern)
    return cls is not None and issubclass(cls, APIView)


def call(client, pattern: URLPattern, method: str, url: str, **headers):
    """One request with an empty body: JSON for the API, a browser form for pages."""
    if method in ("get", "delete"):
        return getattr(client, method)(url, **headers)
    if is_api(pattern):
        return getattr(client, method)(url, data="{}", content_type="application/json", **headers)
    return getattr(client, method)(url, data="", content_type="application/x-www-form-urlencoded", **headers)


def _tenant_models() -> list:
    """Every model with a ``workspace`` foreign key: what a workspace holds."""
    found = []
    for model in apps.get_models():
        field = next((f for f in model._meta.concrete_fields if f.name == "workspace"), None)
        if field is not None and field.related_model is Workspace:
            found.append(model)
    return sorted(found, key=lambda model: model._meta.label)


def workspace_state(workspace: Workspace) -> dict:
    """Every row of ``workspace`` in every app (and the workspace itself), comparable: equal
    before and after a refused request, or that request changed something."""
    state = {"accounts.Workspace": list(Workspace.objects.filter(pk=workspace.pk).values())}
    for model in _tenant_models():
        state[model._meta.label] = sorted(
            model.objects.filter(workspace=workspace).values(), key=lambda row: str(row.get("id"))
        )
    return state
