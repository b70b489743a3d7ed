"""The operator's suspension of a workspace: its keys answer ``403 workspace_suspended`` from
their next call on any worker (the suspended flag travels in each key's cached identity, which
is re-published after commit); its members still see their pages. Audited, idempotent."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from ..models import User, Workspace
from .audit import audit_record
from .errors import field_error
from .keys import api_keys_cache_republish
from .workspaces import _acting_role, _workspace_lock


def workspace_suspend(*, workspace: Workspace, reason: str, actor: User, request=None, now=None) -> Workspace:
    """An operator suspends a workspace: its keys answer 403 ``workspace_suspended`` from their
    next call on any worker (their cached identities are re-published after commit); members
    still see their pages. Suspending a suspended workspace changes nothing (no second event)."""
    reason = (reason if isinstance(reason, str) else "").strip()
    if not reason:
        raise field_error("reason", "Say why the workspace is suspended.")
    now = now or timezone.now()
    with transaction.atomic():
        locked = _workspace_lock(workspace)
        _acting_role(workspace=locked, actor=actor, action="workspace.update", as_operator=True)
        if locked.suspended_at is None:
            locked.suspended_at, locked.suspension_reason = now, reason[:500]
            locked.save(update_fields=["suspended_at", "suspension_reason", "updated_at"])
            keys = api_keys_cache_republish(workspace=locked)
            audit_record(
                action="workspace.suspended",
                actor=actor,
                workspace=locked,
                target=f"workspace:{locked.pk}",
                details={"reason": locked.suspension_reason, "keys": keys, "via": "admin"},
                request=request,
                now=now,
            )
    workspace.suspended_at, workspace.suspension_reason = locked.suspended_at, locked.suspension_reason
    return workspace


def workspace_reinstate(
    *, workspace: Workspace, actor: User, reason: str = "", request=None, now=None
) -> Workspace:
    """Lift a suspension: the keys work again from their next call (identities re-published
    after commit). Reinstating a workspace that is not suspended changes nothing."""
    with transaction.atomic():
        locked = _workspace_lock(workspace)
        _acting_role(workspace=locked, actor=actor, action="workspace.update", as_operator=True)
        if locked.suspended_at is not None:
            previous = {"suspended_at": locked.suspended_at.isoformat(), "reason": locked.suspension_reason}
            locked.suspended_at, locked.suspension_reason = None, ""
            locked.save(update_fields=["suspended_at", "suspension_reason", "updated_at"])
            keys = api_keys_cache_republish(workspace=locked)
            audit_record(
                action="workspace.reinstated",
                actor=actor,
                workspace=locked,
                target=f"workspace:{locked.pk}",
                details={
                    **previous,
                    **({"reinstate_reason": reason.strip()[:500]} if reason and reason.strip() else {}),
                    "keys": keys,
                    "via": "admin",
                },
                request=request,
                now=now,
            )
    workspace.suspended_at, workspace.suspension_reason = locked.suspended_at, locked.suspension_reason
    return workspace


# --- Members ----------------------------------------------------------------------------------
