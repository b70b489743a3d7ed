"""Workspaces, their members and invitations, and the audit log of changes to them.

Who may do what is ``accounts.roles``; the rules the table cannot say live here, under a lock
on the workspace row (so two requests cannot both pass them):

- only an owner may touch an owner (change their role, remove them, revoke an owner's
  invitation) or make one (promote, invite as owner);
- the last owner can neither leave, be removed nor be demoted;
- a personal workspace has one owner, its ``personal_owner``, and cannot be deleted;
- anyone may leave a workspace (unless they are its last owner).

An operator acting in the admin passes ``as_operator=True``: the role checks are skipped, the
rules about owners and personal workspaces are not. Every change appends an audit event.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import ProtectedError, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _

from core.exceptions import ApiError
from core.mail import mail_send_localized

from ..models import ApiKey, Invitation, Membership, Role, User, Workspace
from ..registry import workspace_delete_blockers
from ..roles import ROLE_LABELS, role_can, roles_allowed
from ..workspace_selectors import invitation_is_pending, invitation_token_hash
from .audit import audit_record  # re-exported: it used to live here
from .errors import field_error
from .keys import api_keys_revoke_created_by
from .verification import email_verified_by_proof

logger = logging.getLogger("tollgate.accounts")


def _slug_for(name: str) -> str:
    """A unique-enough slug: the name's slug (or "workspace") and a short random tail."""
    return f"{slugify(name)[:40] or 'workspace'}-{secrets.token_hex(3)}"


def workspace_personal_create(*, user: User) -> Workspace:
    """The user's personal workspace, with them as its owner (created with every account)."""
    label = (user.name or user.email.split("@")[0])[:100]
    with transaction.atomic():
        workspace = Workspace.objects.create(name=label, slug=_slug_for(label), personal_owner=user)
        Membership.objects.create(workspace=workspace, user=user, role=Role.OWNER)
    return workspace


def workspaces_personal_bulk_create(*, users: list[User]) -> list[Workspace]:
    """Personal workspaces for users made by ``bulk_create`` (which sends no signal)."""
    workspaces = Workspace.objects.bulk_create(
        [
            Workspace(
                name=(user.name or user.email.split("@")[0])[:100],
                slug=_slug_for(user.email.split("@")[0]),
                personal_owner=user,
            )
            for user in users
        ]
    )
    Membership.objects.bulk_create(
        [
            Membership(workspace=ws, user=user, role=Role.OWNER)
            for ws, user in zip(workspaces, users, strict=True)
        ]
    )
    return workspaces


# --- Workspaces -------------------------------------------------------------------------------

INVITATION_TTL = timedelta(days=7)
# Pending invitations a workspace may hold at once: an admin's typo loop cannot mail-bomb.
PENDING_INVITATIONS_LIMIT = 100
WORKSPACE_NAME_MAX_LENGTH = 100


def _workspace_name_clean(name) -> str:
    name = (name if isinstance(name, str) else "").strip()
    if not name:
        raise field_error("name", "A workspace name is required.")
    if len(name) > WORKSPACE_NAME_MAX_LENGTH:
        raise field_error("name", f"A workspace name has at most {WORKSPACE_NAME_MAX_LENGTH} characters.")
    return name


def _role_clean(role, *, field: str = "role") -> str:
    if role not in Role.values:
        raise field_error(field, f"Choose a role: {', '.join(Role.values)}.")
    return role


def _forbidden(message: str, *, action: str | None = None, roles: list[str] | None = None) -> ApiError:
    """The 403 ``tenancy`` answers, with the roles that may (``required_role``)."""
    return ApiError("forbidden", message, required_role=roles if roles is not None else roles_allowed(action))


def _workspace_lock(workspace: Workspace) -> Workspace:
    """Lock the workspace row: the mutex of every change to its members and invitations."""
    locked = Workspace.objects.select_for_update().filter(pk=workspace.pk).first()
    if locked is None:  # deleted meanwhile
        raise ApiError("not_found", "No such workspace.")
    return locked


def _acting_role(*, workspace: Workspace, actor: User, action: str, as_operator: bool) -> str:
    """The actor's role (read under the workspace lock), checked against ``action``. An operator
    acts with an owner's powers; a non-member gets the 404 an unknown workspace gets."""
    if as_operator:
        if not actor.is_staff:
            raise ApiError("forbidden", "Only staff act as operators.")
        return Role.OWNER
    role = Membership.objects.filter(workspace=workspace, user=actor).values_list("role", flat=True).first()
    if role is None:
        raise ApiError("not_found", "No such workspace.")
    if not role_can(role, action):
        raise _forbidden(
            f"Your role ({role}) may not do this in this workspace; it needs: "
            f"{', '.join(roles_allowed(action))}.",
            action=action,
        )
    return role


def _owner_count(workspace: Workspace) -> int:
    return Membership.objects.filter(workspace=workspace, role=Role.OWNER).count()


def _owner_rules_check(*, workspace: Workspace, role: str, actor_role: str) -> None:
    """Only an owner makes an owner; a personal workspace never gets a second one."""
    if role != Role.OWNER:
        return
    if actor_role != Role.OWNER:
        raise _forbidden("Only an owner can make someone an owner.", roles=[Role.OWNER.value])
    if workspace.personal:
        raise ApiError(
            "conflict", "A personal workspace has a single owner; create a team workspace to share it."
        )


def _via(as_operator: bool) -> dict:
    return {"via": "admin"} if as_operator else {}


def workspace_create(*, user: User, name: str, request=None) -> Workspace:
    """A team workspace with ``user`` as its owner."""
    name = _workspace_name_clean(name)
    with transaction.atomic():
        workspace = Workspace.objects.create(name=name, slug=_slug_for(name))
        Membership.objects.create(workspace=workspace, user=user, role=Role.OWNER)
        audit_record(
            action="workspace.created",
            actor=user,
            workspace=workspace,
            target=f"workspace:{workspace.pk}",
            details={"name": name},
            request=request,
        )
    return workspace


def workspace_update(
    *, workspace: Workspace, actor: User, name: str, as_operator: bool = False, request=None
) -> Workspace:
    """Rename a workspace (its slug, which API clients may send as ``X-Workspace``, stays)."""
    name = _workspace_name_clean(name)
    with transaction.atomic():
        locked = _workspace_lock(workspace)
        _acting_role(workspace=locked, actor=actor, action="workspace.update", as_operator=as_operator)
        previous = locked.name
        if previous != name:
            locked.name = name
            locked.save(update_fields=["name", "updated_at"])
            audit_record(
                action="workspace.updated",
                actor=actor,
                workspace=locked,
                target=f"workspace:{locked.pk}",
                details={"name": {"from": previous, "to": name}, **_via(as_operator)},
                request=request,
            )
    workspace.name, workspace.updated_at = locked.name, locked.updated_at
    return workspace


def workspace_delete_refusals(*, workspace: Workspace, now=None) -> list[str]:
    """Why ``workspace`` cannot be deleted now (empty: it can): its live proxy keys, then every
    reason the other apps' guards give (``accounts.registry``: a subscription, a balance)."""
    now = now or timezone.now()
    reasons = []
    live_keys = (
        ApiKey.objects.filter(workspace=workspace)
        .filter(Q(revoked_at__isnull=True) | Q(revoked_at__gt=now))
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .count()
    )
    if live_keys:
        reasons.append(
            f"It has {live_keys} active API key{'s' if live_keys != 1 else ''}; revoke them first."
        )
    return reasons + workspace_delete_blockers(workspace=workspace)


def workspace_delete(*, workspace: Workspace, actor: User, as_operator: bool = False, request=None) -> None:
    """Delete a team workspace and everything it holds. Refused (409) for a personal workspace
    and for one that still holds something another app guards (``workspace_not_empty``).

    The audit event outlives the workspace: it is recorded without one (the workspace's own
    events go with it), its id and name in ``details``."""
    with transaction.atomic():
        locked = _workspace_lock(workspace)
        _acting_role(workspace=locked, actor=actor, action="workspace.delete", as_operator=as_operator)
        if locked.personal:
            raise ApiError(
                "conflict", "A personal workspace cannot be deleted; it lives as long as its account."
            )
        reasons = workspace_delete_refusals(workspace=locked)
        if reasons:
            raise ApiError(
                "workspace_not_empty",
                "This workspace cannot be deleted yet: " + " ".join(reasons),
                status_code=409,
                reasons=reasons,
            )
        audit_record(
            action="workspace.deleted",
            actor=actor,
            workspace=None,
            target=f"workspace:{locked.pk}",
            details={
                "workspace_id": locked.pk,
                "name": locked.name,
                "slug": locked.slug,
                **_via(as_operator),
            },
            request=request,
        )
        try:
            locked.delete()
        except ProtectedError as error:  # history kept on purpose (payments): no guard spoke for it
            kinds = sorted({str(obj._meta.verbose_name_plural) for obj in error.protected_objects})
            reason = f"It holds records that are kept for good ({', '.join(kinds)})."
            raise ApiError(
                "workspace_not_empty",
                f"This workspace cannot be deleted: {reason}",
                status_code=409,
                reasons=[reason],
            )


def _member_get(*, workspace: Workspace, user_id) -> Membership:
    membership = (
        Membership.objects.select_related("user").filter(workspace=workspace, user_id=user_id).first()
        if str(user_id).isdigit()
        else None
    )
    if membership is None:
        raise ApiError("not_found", "No such member in this workspace.", param="user_id")
    return membership


def membership_create(
    *, workspace: Workspace, user: User, role: str, actor: User, as_operator: bool = True, request=None
) -> Membership:
    """Add ``user`` directly (the operator's admin; customers join through invitations)."""
    role = _role_clean(role)
    with transaction.atomic():
        locked = _workspace_lock(workspace)
        actor_role = _acting_role(
            workspace=locked, actor=actor, action="members.manage", as_operator=as_operator
        )
        _owner_rules_check(workspace=locked, role=role, actor_role=actor_role)
        if Membership.objects.filter(workspace=locked, user=user).exists():
            raise ApiError(
                "conflict", f"{user.email} is already a member of this workspace.", param="user_id"
            )
        membership = Membership.objects.create(workspace=locked, user=user, role=role)
        audit_record(
            action="member.added",
            actor=actor,
            workspace=locked,
            target=f"user:{user.pk}",
            details={"email": user.email, "role": role, **_via(as_operator)},
            request=request,
        )
    return membership


def membership_role_change(
    *, workspace: Workspace, actor: User, user_id, role: str, as_operator: bool = False, request=None
) -> Membership:
    """Change a member's role. Admins cannot touch owners nor make one; the last owner stays."""
    role = _role_clean(role)
    with transaction.atomic():
        locked = _workspace_lock(workspace)
        actor_role = _acting_role(
            workspace=locked, actor=actor, action="members.manage", as_operator=as_operator
        )
        membership = _member_get(workspace=locked, user_id=user_id)
        if membership.role == role:
            return membership
        if membership.role == Role.OWNER and actor_role != Role.OWNER:
            raise _forbidden("Only an owner can change an owner's role.", roles=[Role.OWNER.value])
        _owner_rules_check(workspace=locked, role=role, actor_role=actor_role)
        if membership.role == Role.OWNER and _owner_count(locked) <= 1:
            raise ApiError(
                "last_owner",
                "The last owner cannot be demoted; make someone else an owner first.",
                status_code=409,
                param="role",
            )
        previous = membership.role
        membership.role = role
        membership.save(update_fields=["role", "updated_at"])
        audit_record(
            action="member.role_changed",
            actor=actor,
            workspace=locked,
            target=f"user:{membership.user_id}",
            details={"email": membership.user.email, "from": previous, "to": role, **_via(as_operator)},
            request=request,
        )
    return membership


def membership_remove(
    *, workspace: Workspace, actor: User, user_id, as_operator: bool = False, request=None
) -> list[ApiKey]:
    """Remove a member, or leave (``user_id`` is the actor's own). The keys the member created
    in this workspace are revoked with them; returns those keys.

    Leaving needs no permission; removing someone else needs ``members.manage``, and an owner
    to remove an owner. The last owner can do neither."""
    with transaction.atomic():
        locked = _workspace_lock(workspace)
        leaving = not as_operator and str(user_id) == str(actor.pk)
        action = "workspace.read" if leaving else "members.manage"
        actor_role = _acting_role(workspace=locked, actor=actor, action=action, as_operator=as_operator)
        membership = _member_get(workspace=locked, user_id=user_id)
        if membership.role == Role.OWNER and actor_role != Role.OWNER:
            raise _forbidden("Only an owner can remove an owner.", roles=[Role.OWNER.value])
        if membership.role == Role.OWNER and _owner_count(locked) <= 1:
            raise ApiError(
                "last_owner",
                "The last owner cannot leave; make someone else an owner first, or delete the workspace.",
                status_code=409,
            )
        member = membership.user
        revoked = api_keys_revoke_created_by(workspace=locked, user=member, actor=actor, request=request)
        membership.delete()
        audit_record(
            action="member.left" if leaving else "member.removed",
            actor=actor,
            workspace=locked,
            target=f"user:{member.pk}",
            details={
                "email": member.email,
                "role": membership.role,
                "revoked_keys": [key.pk for key in revoked],
                **_via(as_operator),
            },
            request=request,
        )
    return revoked


# --- Invitations ------------------------------------------------------------------------------


def invitation_accept_url(token: str) -> str:
    return settings.SITE_URL + reverse("accounts:invitation-accept", kwargs={"token": token})


def _email_clean(email) -> str:
    email = (email if isinstance(email, str) else "").strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise field_error("email", "Enter a valid email address.")
    return email


def _invitation_email_send(*, invitation_id: int, accept_url: str) -> None:
    """The invitation's email (after commit: a mail server that hangs holds no lock)."""
    invitation = Invitation.objects.select_related("workspace", "invited_by").filter(pk=invitation_id).first()
    if invitation is None:
        return
    inviter = invitation.invited_by

    def build() -> tuple[str, str]:
        inviter_label = (inviter.name or inviter.email) if inviter is not None else _("Someone")
        context = {
            "inviter": inviter_label,
            "workspace": invitation.workspace,
            "role": str(ROLE_LABELS.get(invitation.role, invitation.role)),
            "accept_url": accept_url,
            "expires_at": invitation.expires_at,
        }
        subject = _("%(inviter)s invited you to %(workspace)s on Tollgate") % {
            "inviter": inviter_label,
            "workspace": invitation.workspace.name,
        }
        return subject, render_to_string("accounts/email/invitation.txt", context)

    # The invitee has no account (or none we may read the language of) yet: the email speaks the
    # inviter's language, the best guess of a language they share.
    language = inviter.language if inviter is not None else ""
    mail_send_localized(recipients=[(invitation.email, language)], build=build)
    logger.info(
        "invitation sent", extra={"invitation_id": invitation.pk, "workspace_id": invitation.workspace_id}
    )


def invitation_create(
    *, workspace: Workspace, actor: User, email: str, role: str, request=None, now=None
) -> tuple[Invitation, str]:
    """Invite ``email`` with ``role``: returns the invitation and its accept URL (which holds
    the token: shown to the inviter once, mailed to the invitee, never stored)."""
    email = _email_clean(email)
    role = _role_clean(role)
    now = now or timezone.now()
    with transaction.atomic():
        locked = _workspace_lock(workspace)
        actor_role = _acting_role(
            workspace=locked, actor=actor, action="invitations.manage", as_operator=False
        )
        _owner_rules_check(workspace=locked, role=role, actor_role=actor_role)
        if Membership.objects.filter(workspace=locked, user__email__iexact=email).exists():
            raise ApiError("conflict", f"{email} is already a member of this workspace.", param="email")
        pending = Invitation.objects.filter(
            workspace=locked, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now
        )
        if pending.filter(email__iexact=email).exists():
            raise ApiError(
                "conflict",
                f"{email} already has a pending invitation; revoke it to send a new one.",
                param="email",
            )
        if pending.count() >= PENDING_INVITATIONS_LIMIT:
            raise field_error(
                "email",
                f"This workspace has {PENDING_INVITATIONS_LIMIT} pending invitations; revoke some first.",
            )
        token = secrets.token_urlsafe(32)
        invitation = Invitation.objects.create(
            workspace=locked,
            email=email,
            role=role,
            token_hash=invitation_token_hash(token),
            invited_by=actor,
            expires_at=now + INVITATION_TTL,
        )
        audit_record(
            action="invitation.created",
            actor=actor,
            workspace=locked,
            target=f"invitation:{invitation.pk}",
            details={"email": email, "role": role},
            request=request,
        )
        accept_url = invitation_accept_url(token)
        transaction.on_commit(
            lambda: _invitation_email_send(invitation_id=invitation.pk, accept_url=accept_url), robust=True
        )
    return invitation, accept_url


def invitation_revoke(
    *, workspace: Workspace, actor: User, invitation_id, request=None, now=None
) -> Invitation:
    """Revoke a pending invitation (an admin cannot revoke an owner's). Revoking one already
    revoked changes nothing; an accepted one answers 409 (remove the member instead)."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = _workspace_lock(workspace)
        actor_role = _acting_role(
            workspace=locked, actor=actor, action="invitations.manage", as_operator=False
        )
        invitation = (
            Invitation.objects.select_for_update().filter(workspace=locked, pk=invitation_id).first()
            if str(invitation_id).isdigit()
            else None
        )
        if invitation is None:
            raise ApiError("not_found", "No such invitation in this workspace.", param="invitation_id")
        if invitation.role == Role.OWNER and actor_role != Role.OWNER:
            raise _forbidden("Only an owner can revoke an owner's invitation.", roles=[Role.OWNER.value])
        if invitation.accepted_at is not None:
            raise ApiError("conflict", "This invitation was accepted; remove the member instead.")
        if invitation.revoked_at is not None:
            return invitation
        invitation.revoked_at = now
        invitation.save(update_fields=["revoked_at", "updated_at"])
        audit_record(
            action="invitation.revoked",
            actor=actor,
            workspace=locked,
            target=f"invitation:{invitation.pk}",
            details={"email": invitation.email, "role": invitation.role},
            request=request,
        )
    return invitation


def invitation_accept(*, user: User, token: str, request=None, now=None) -> Membership:
    """Join the invitation's workspace with its role. Single use: the invitation row is locked
    and marked accepted in the same transaction as the membership is created, so of two
    concurrent accepts one joins and the other finds it gone (410).

    Unknown token: 404. Sent to another address (case-insensitive): 403. Accepted, revoked or
    expired: 410 ``invitation_gone``. Already a member: 409. Confirms the user's address (the
    token reached that mailbox), so an unconfirmed account may accept its own invitation."""
    now = now or timezone.now()
    token_hash = invitation_token_hash(token if isinstance(token, str) else "")
    with transaction.atomic():
        invitation = (
            Invitation.objects.select_for_update(of=("self",))
            .select_related("workspace")
            .filter(token_hash=token_hash)
            .first()
        )
        if invitation is None:
            raise ApiError("not_found", "No such invitation.", param="token")
        if invitation.email.lower() != user.email.lower():
            raise ApiError("forbidden", "This invitation was sent to another email address.")
        if not invitation_is_pending(invitation, now=now):
            raise ApiError("invitation_gone", "This invitation was already used, revoked or has expired.")
        workspace = invitation.workspace
        if Membership.objects.filter(workspace=workspace, user=user).exists():
            raise ApiError("conflict", "You are already a member of this workspace.")
        membership = Membership.objects.create(workspace=workspace, user=user, role=invitation.role)
        # The token was mailed to this address: using it proves the mailbox, as the confirmation
        # link would. So a person who signs up from an invitation lands in the workspace at once.
        email_verified_by_proof(user=user, now=now)
        invitation.accepted_at = now
        invitation.accepted_by = user
        invitation.save(update_fields=["accepted_at", "accepted_by", "updated_at"])
        audit_record(
            action="invitation.accepted",
            actor=user,
            workspace=workspace,
            target=f"invitation:{invitation.pk}",
            details={"email": user.email, "role": invitation.role},
            request=request,
        )
    return membership
