"""Reads for workspaces, their members, invitations and audit log (the writes are in
``accounts.services.workspaces``). Every read of one workspace's people takes the workspace; the
caller has resolved it for a member first (``workspace_member_context_get``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.utils import timezone

from core.exceptions import ApiError

from .models import AuditEvent, Invitation, Membership, Role, User, Workspace
from .roles import ROLE_ORDER
from .tenancy import WorkspaceContext, workspace_context_for


def invitation_token_hash(token: str) -> str:
    """Invitations are looked up by the SHA-256 (hex) of their token; the token is never stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def invitation_is_pending(invitation: Invitation, *, now=None) -> bool:
    """Not accepted, not revoked, not expired: it can still be accepted."""
    now = now or timezone.now()
    return invitation.accepted_at is None and invitation.revoked_at is None and invitation.expires_at > now


def _role_rank():
    """Owners first, then admins, billing, developers (``ROLE_ORDER``)."""
    return Case(
        *[When(role=role, then=Value(rank)) for rank, role in enumerate(ROLE_ORDER)],
        output_field=IntegerField(),
    )


def workspace_memberships_for_user(*, user: User) -> QuerySet[Membership]:
    """The user's memberships with their workspaces: the personal one first, then by name."""
    return (
        Membership.objects.filter(user=user)
        .select_related("workspace")
        .annotate(
            personal_rank=Case(
                When(workspace__personal_owner=user, then=Value(0)),
                default=Value(1),
                output_field=IntegerField(),
            )
        )
        .order_by("personal_rank", "workspace__name", "workspace_id")
    )


def workspace_member_context_get(
    *, user: User, workspace_id, key_workspace_id: int | None = None
) -> WorkspaceContext:
    """The caller's context in the workspace a URL names: 404 (``not_found``) when it does not
    exist, when the caller is not a member, and when a proxy key of another workspace asks (a
    key acts on its own workspace only)."""
    workspace = Workspace.objects.filter(pk=workspace_id).first() if str(workspace_id).isdigit() else None
    if workspace is None or (key_workspace_id is not None and key_workspace_id != workspace.pk):
        raise ApiError("not_found", "No such workspace.", param="workspace_id")
    return workspace_context_for(user=user, workspace=workspace)


def membership_list(*, workspace: Workspace) -> QuerySet[Membership]:
    """A workspace's members, owners first, then by email."""
    return (
        Membership.objects.filter(workspace=workspace)
        .select_related("user")
        .annotate(role_rank=_role_rank())
        .order_by("role_rank", "user__email")
    )


def membership_owner_count(*, workspace: Workspace) -> int:
    return Membership.objects.filter(workspace=workspace, role=Role.OWNER).count()


def invitation_pending_list(*, workspace: Workspace, now=None) -> QuerySet[Invitation]:
    """Invitations that can still be accepted, newest first."""
    now = now or timezone.now()
    return (
        Invitation.objects.filter(
            workspace=workspace, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now
        )
        .select_related("invited_by")
        .order_by("-created_at", "-id")
    )


@dataclass(frozen=True)
class InvitationView:
    """What the accept page may know about an invitation its token names."""

    invitation: Invitation
    state: str  # "pending", "accepted", "revoked" or "expired"

    @property
    def pending(self) -> bool:
        return self.state == "pending"


def invitation_by_token_get(*, token: str, now=None) -> InvitationView | None:
    """The invitation a (plaintext) token names, with its state; None for an unknown token."""
    invitation = (
        Invitation.objects.select_related("workspace")
        .filter(token_hash=invitation_token_hash(token if isinstance(token, str) else ""))
        .first()
    )
    if invitation is None:
        return None
    if invitation.accepted_at is not None:
        state = "accepted"
    elif invitation.revoked_at is not None:
        state = "revoked"
    elif not invitation_is_pending(invitation, now=now):
        state = "expired"
    else:
        state = "pending"
    return InvitationView(invitation=invitation, state=state)


def audit_event_list(*, workspace: Workspace) -> QuerySet[AuditEvent]:
    """A workspace's audit log, newest first (the model's ordering, which the cursor uses)."""
    return AuditEvent.objects.filter(workspace=workspace).order_by("-created_at", "-id")
