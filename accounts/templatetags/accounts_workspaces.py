"""``{% workspace_switcher %}``: the navigation's workspace menu (signed-in pages only).

One query (the user's memberships with their workspaces). The workspace shown as current is the
page's own (``workspace_context``, which pages pass), else the one chosen in the session, else
the personal one: the same order ``accounts.tenancy`` resolves pages with.

``{% workspace_suspended_notice %}``: the banner a member of a suspended workspace sees on every
signed-in page (the operator's reason stays internal). It reads the same memberships, kept on the
request, so the two tags cost one query.
"""

from django import template
from django.urls import NoReverseMatch, reverse

from ..roles import role_can
from ..services.verification import email_verification_required
from ..tenancy import SESSION_WORKSPACE_KEY
from ..workspace_selectors import workspace_memberships_for_user

register = template.Library()


def _current_id(context, request, workspaces: list[dict]) -> int | None:
    ids = {ws["id"] for ws in workspaces}
    page_context = context.get("workspace_context")
    page_workspace = getattr(page_context, "workspace", None)
    if page_workspace is not None and page_workspace.pk in ids:
        return page_workspace.pk
    chosen = request.session.get(SESSION_WORKSPACE_KEY) if hasattr(request, "session") else None
    if chosen is not None and str(chosen).isdigit() and int(chosen) in ids:
        return int(chosen)
    personal = next((ws["id"] for ws in workspaces if ws["personal"]), None)
    return personal if personal is not None else next(iter(ids), None)


_MEMBERSHIPS_ATTR = "_workspace_switcher_memberships"


def _workspaces(request, user) -> list[dict]:
    """The user's workspaces as the menu lists them, read once per request."""
    cached = getattr(request, _MEMBERSHIPS_ATTR, None)
    if cached is not None and cached[0] == user.pk:
        return cached[1]
    workspaces = [
        {
            "id": m.workspace_id,
            "name": m.workspace.name,
            "personal": m.workspace.personal_owner_id == user.pk,
            "suspended": m.workspace.suspended_at is not None,
            "role": m.role,
        }
        for m in workspace_memberships_for_user(user=user)
    ]
    setattr(request, _MEMBERSHIPS_ATTR, (user.pk, workspaces))
    return workspaces


@register.inclusion_tag("accounts/workspaces/_switcher.html", takes_context=True)
def workspace_switcher(context) -> dict:
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"switcher": None}
    workspaces = _workspaces(request, user)
    current = _current_id(context, request, workspaces)
    try:
        switch_url = reverse("accounts:workspace-switch")
    except NoReverseMatch:  # the workspace URLs are not wired (or no workspace): no menu
        return {"switcher": None}
    return {
        "switcher": {
            "workspaces": workspaces,
            "current_id": current,
            "switch_url": switch_url,
            "next": request.get_full_path(),
        }
    }


# The workspace pages' tabs (``{% workspace_tabs %}``): path prefixes → the tab they belong to.
TAB_PREFIXES = (
    ("/dashboard/", "overview"),
    ("/activity/", "activity"),
    ("/keys/", "keys"),
    ("/billing/", "billing"),
    ("/credits/", "billing"),
    ("/workspaces/", "members"),
    ("/notifications/", "notifications"),
    ("/webhooks/", "notifications"),
)


def _tab_of(path: str) -> str | None:
    if path.startswith("/billing/") and path != "/billing/":
        return None  # checkout results and the simulators are not workspace pages
    if path.startswith("/workspaces/") and not path.endswith(("/members/", "/audit/")):
        return None  # creating a workspace
    return next((name for prefix, name in TAB_PREFIXES if path.startswith(prefix)), None)


@register.inclusion_tag("accounts/workspaces/_tabs.html", takes_context=True)
def workspace_tabs(context) -> dict:
    """The tabs of the workspace pages (Overview, Activity, Keys, Billing, Members,
    Notifications), shown on those pages only; Billing only to roles that may read it. The
    role comes from the memberships the switcher already read (no extra query)."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"tabs": None}
    section = _tab_of(request.path)
    workspaces = _workspaces(request, user) if section else []
    current = _current_id(context, request, workspaces) if workspaces else None
    if current is None:
        return {"tabs": None}
    role = next(ws["role"] for ws in workspaces if ws["id"] == current)
    return {
        "tabs": {
            "current": section,
            "members_url": reverse("accounts:workspace-members", kwargs={"workspace_id": current}),
            "can_billing": role_can(role, "billing.read"),
        }
    }


@register.inclusion_tag("accounts/workspaces/_suspended_notice.html", takes_context=True)
def workspace_suspended_notice(context) -> dict:
    """``{"suspended": True}`` when the page's current workspace (the switcher's) is suspended.
    Only the fact: ``suspension_reason`` is the operator's note, never shown to the customer."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"suspended": False}
    page_workspace = getattr(context.get("workspace_context"), "workspace", None)
    if page_workspace is not None:
        return {"suspended": page_workspace.suspended_at is not None}
    workspaces = _workspaces(request, user)
    current = _current_id(context, request, workspaces)
    return {"suspended": any(ws["suspended"] for ws in workspaces if ws["id"] == current)}


@register.inclusion_tag("accounts/_email_unconfirmed.html", takes_context=True)
def email_unconfirmed_notice(context) -> dict:
    """The reminder to confirm the address, on every signed-in page until it is confirmed; with
    ``EMAIL_VERIFICATION=mandatory`` it says the keys wait for it."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or user.email_verified_at is not None:
        return {"notice": None}
    return {"notice": {"email": user.email, "required": email_verification_required()}, "request": request}
