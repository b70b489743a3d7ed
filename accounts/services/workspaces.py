"""Workspaces, their members and invitations, and the audit log of changes to them."""

from __future__ import annotations

import logging
import secrets

from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from core.clientaddr import client_address_get
from core.logging import request_id_var

from ..models import AuditEvent, Membership, Role, User, Workspace

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


def audit_record(
    *,
    action: str,
    actor: User | None,
    workspace: Workspace | None = None,
    target: str = "",
    details: dict | None = None,
    request=None,
    now=None,
) -> AuditEvent:
    """Append one audit event. ``details`` must hold no secret (callers pass masked values);
    ``request`` gives the IP and request id when the change came through the site or API."""
    ip = (client_address_get(request).split("/")[0] or None) if request is not None else None
    request_id = request_id_var.get()
    return AuditEvent.objects.create(
        workspace=workspace,
        actor=actor if actor is not None and actor.pk else None,
        actor_email=getattr(actor, "email", "") or "",
        action=action,
        target=target,
        details=details or {},
        ip=ip,
        request_id="" if request_id == "-" else request_id[:64],
        created_at=now or timezone.now(),
    )
