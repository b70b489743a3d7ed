"""The audit log's one writer. Its own module, importing no other service module: keys,
provider keys and workspaces all record changes, and the workspaces module calls the keys one
(a removed member's keys are revoked), so the log cannot live in either without a cycle."""

from __future__ import annotations

from django.utils import timezone

from core.clientaddr import client_address_get
from core.logging import request_id_var

from ..models import AuditEvent, User, Workspace


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
