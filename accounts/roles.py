"""The one table of what each workspace role may do, read by the API, the pages and the admin.

An action is a short dotted name; ``ROLE_PERMISSIONS`` maps each action to the roles allowed it.
A view that mutates a workspace's data names its action (``permission_required`` on DRF views,
``workspace_permission_require`` in services): the permission-matrix test walks every mutating
URL pattern, so an endpoint without a declared action fails CI.
"""

from __future__ import annotations

from django.utils.translation import pgettext_lazy

from .models import Role

OWNER, ADMIN, BILLING, DEVELOPER = Role.OWNER, Role.ADMIN, Role.BILLING, Role.DEVELOPER
EVERYONE = frozenset(Role)

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    # The workspace itself.
    "workspace.read": EVERYONE,
    "workspace.update": frozenset({OWNER, ADMIN}),
    "workspace.delete": frozenset({OWNER}),
    # People. Admins manage members and invitations except owners (checked in the services).
    "members.read": EVERYONE,
    "members.manage": frozenset({OWNER, ADMIN}),
    "invitations.manage": frozenset({OWNER, ADMIN}),
    "audit.read": frozenset({OWNER, ADMIN}),
    # Proxy keys: everyone creates and revokes their own; owners and admins any key.
    "keys.read": EVERYONE,
    "keys.create": EVERYONE,
    "keys.manage_any": frozenset({OWNER, ADMIN}),
    "limits.manage": frozenset({OWNER, ADMIN}),
    # Bring-your-own provider keys (the operator's global keys are staff-only, not a role).
    "provider_keys.read": frozenset({OWNER, ADMIN}),
    "provider_keys.manage": frozenset({OWNER, ADMIN}),
    # Money.
    "billing.read": frozenset({OWNER, ADMIN, BILLING}),
    "billing.manage": frozenset({OWNER, ADMIN, BILLING}),
    "usage.read": EVERYONE,
    # Outgoing webhooks (notifications): endpoints, their secrets and delivery logs.
    "webhooks.read": frozenset({OWNER, ADMIN}),
    "webhooks.manage": frozenset({OWNER, ADMIN}),
}

# The roles as pages and emails name them, translated (APIs keep the codes).
ROLE_LABELS = {
    Role.OWNER: pgettext_lazy("workspace role", "Owner"),
    Role.ADMIN: pgettext_lazy("workspace role", "Admin"),
    Role.BILLING: pgettext_lazy("workspace role", "Billing"),
    Role.DEVELOPER: pgettext_lazy("workspace role", "Developer"),
}

# Roles from most to least powerful, for display and for "who may assign whom".
ROLE_ORDER: tuple[str, ...] = (OWNER, ADMIN, BILLING, DEVELOPER)


def role_can(role: str | None, action: str) -> bool:
    """Whether ``role`` may do ``action``. An unknown action is a programming error (KeyError),
    so a typo cannot silently allow or refuse."""
    return role is not None and role in ROLE_PERMISSIONS[action]


def roles_allowed(action: str) -> list[str]:
    """The roles allowed ``action``, most powerful first (the 403's ``required_role``)."""
    allowed = ROLE_PERMISSIONS[action]
    return [role.value if hasattr(role, "value") else role for role in ROLE_ORDER if role in allowed]


def role_permissions(role: str) -> list[str]:
    """Every action ``role`` may do (for pages that show or hide buttons)."""
    return sorted(action for action, roles in ROLE_PERMISSIONS.items() if role in roles)
