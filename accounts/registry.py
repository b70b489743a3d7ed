"""Hooks other apps register with accounts, so accounts never imports them.

A workspace holds money and history that belong to other apps (a running subscription, a credit
balance). Deleting it would cascade that away, so each app registers a *delete guard*: a function
``fn(*, workspace) -> str | None`` answering why the workspace cannot be deleted now (a sentence
shown to the user, e.g. "It has an active subscription; cancel it first."), or None. Register it
from the app's ``AppConfig.ready()``::

    from accounts.registry import workspace_delete_guard_register

    workspace_delete_guard_register(subscription_blocks_workspace_delete)

``accounts.services.workspace_delete`` refuses with ``409 workspace_not_empty`` and every
reason when any guard answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import Workspace

WorkspaceDeleteGuard = Callable[..., "str | None"]

_delete_guards: list[WorkspaceDeleteGuard] = []


def workspace_delete_guard_register(fn: WorkspaceDeleteGuard) -> WorkspaceDeleteGuard:
    """Add a delete guard (once: registering the same function again is a no-op, so a
    ``ready()`` run twice in tests does not double the reasons). Usable as a decorator."""
    if fn not in _delete_guards:
        _delete_guards.append(fn)
    return fn


def workspace_delete_guard_unregister(fn: WorkspaceDeleteGuard) -> None:
    """Remove a guard (tests that register a temporary one)."""
    if fn in _delete_guards:
        _delete_guards.remove(fn)


def workspace_delete_blockers(*, workspace: Workspace) -> list[str]:
    """Every registered guard's reason against deleting ``workspace``, in registration order."""
    reasons = []
    for guard in list(_delete_guards):
        reason = guard(workspace=workspace)
        if reason:
            reasons.append(str(reason))
    return reasons


# --- What the admin shows about a workspace ------------------------------------------------
# The operator's workspace page lists the workspace's plan, balance and keys, which live in
# apps above accounts. Each registers a *summary*: ``fn(*, workspace) -> list[tuple[str, str]]``
# of (label, value) lines, shown in registration order.

WorkspaceSummary = Callable[..., "list[tuple[str, str]]"]

_summaries: list[WorkspaceSummary] = []


def workspace_summary_register(fn: WorkspaceSummary) -> WorkspaceSummary:
    if fn not in _summaries:
        _summaries.append(fn)
    return fn


def workspace_summary_lines(*, workspace: Workspace) -> list[tuple[str, str]]:
    lines: list[tuple[str, str]] = []
    for summary in list(_summaries):
        lines.extend(summary(workspace=workspace))
    return lines
