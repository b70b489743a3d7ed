"""A member's monthly spend caps: what every key they created in a workspace may spend together,
in money (minor units of the workspace plan's currency) or credits, per calendar month (UTC).

The caps live on the membership and travel in each of the member's keys' cached identities, so
the proxy enforces them in the same reservation as the keys' own limits (no extra round trip).
Setting them re-publishes those identities after commit: the next call on any worker obeys.
Only owners and admins set caps, and only an owner caps an owner.
"""

from __future__ import annotations

from django.db import transaction

from ..models import Membership, Role, User, Workspace
from .audit import audit_record
from .errors import field_error
from .keys import api_keys_cache_republish
from .workspaces import _acting_role, _forbidden, _member_get, _via, _workspace_lock

MEMBER_LIMIT_UNITS = ("money", "credits")
MEMBER_LIMIT_WINDOW = "month"


def membership_limits_clean(limits) -> list[dict]:
    """``limits`` validated (400 ``invalid_request`` with ``param``): a list of
    ``{"unit": "money"|"credits", "amount"[, "window": "month"]}``, at most one per unit."""
    if not isinstance(limits, list):
        raise field_error("limits", "limits must be a list.")
    cleaned, seen = [], set()
    for index, item in enumerate(limits):
        param = f"limits[{index}]"
        if not isinstance(item, dict) or not {"unit", "amount"} <= set(item) <= {"unit", "amount", "window"}:
            raise field_error(param, 'Each cap is {"unit", "amount"} (window: "month").')
        unit, amount = item["unit"], item["amount"]
        if unit not in MEMBER_LIMIT_UNITS:
            raise field_error(f"{param}.unit", f"unit must be one of {', '.join(MEMBER_LIMIT_UNITS)}.")
        if item.get("window", MEMBER_LIMIT_WINDOW) != MEMBER_LIMIT_WINDOW:
            raise field_error(f"{param}.window", "A member's cap is monthly: window must be month.")
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= 2**62:
            raise field_error(f"{param}.amount", "amount must be a positive integer.")
        if unit in seen:
            raise field_error(param, f"There is already a {unit} cap.")
        seen.add(unit)
        cleaned.append({"unit": unit, "window": MEMBER_LIMIT_WINDOW, "amount": amount})
    return cleaned


def membership_limits_set(
    *, workspace: Workspace, actor: User, user_id, limits, as_operator: bool = False, request=None
) -> Membership:
    """Set (or, with ``[]``, lift) a member's monthly caps. Audited; enforced from the member's
    next call on any worker."""
    cleaned = membership_limits_clean(limits)
    with transaction.atomic():
        locked = _workspace_lock(workspace)
        actor_role = _acting_role(
            workspace=locked, actor=actor, action="members.manage", as_operator=as_operator
        )
        membership = _member_get(workspace=locked, user_id=user_id)
        if membership.role == Role.OWNER and actor_role != Role.OWNER:
            raise _forbidden("Only an owner can cap an owner's spend.", roles=[Role.OWNER.value])
        if membership.limits == cleaned:
            return membership
        previous = membership.limits
        membership.limits = cleaned
        membership.save(update_fields=["limits", "updated_at"])
        audit_record(
            action="member.limits_changed",
            actor=actor,
            workspace=locked,
            target=f"user:{membership.user_id}",
            details={"email": membership.user.email, "from": previous, "to": cleaned, **_via(as_operator)},
            request=request,
        )
        api_keys_cache_republish(workspace=locked, created_by=membership.user)
    return membership
