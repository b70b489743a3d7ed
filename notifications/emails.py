"""The emails of reached thresholds, to the workspace's billing contacts (its active owners and
billing members), when the workspace left email alerts on."""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse

from accounts.models import ApiKey, User, Workspace
from accounts.selectors import workspace_billing_emails

from .selectors import notification_settings_get

logger = logging.getLogger("tollgate.notifications")

METER_LABELS = {"llm_tokens": "LLM tokens", "emails": "Emails", "requests": "Requests (messages)"}
EMAILED_EVENTS = frozenset(
    {
        "quota.threshold_reached",
        "key.limit_reached",
        "member.limit_reached",
        "credits.low",
        "credits.depleted",
    }
)


def _url(name: str, fallback: str) -> str:
    try:
        path = reverse(name)
    except NoReverseMatch:
        path = fallback
    return f"{settings.SITE_URL}{path}"


def _subject(*, workspace: Workspace, event: str, data: dict, context: dict) -> str:
    whose = "your" if workspace.personal else f"{workspace.name}'s"
    threshold = data.get("threshold")
    if event == "quota.threshold_reached":
        label = context["label"]
        if threshold >= 100:
            return f"Tollgate: {whose} {label} quota is used up"
        return f"Tollgate: {threshold}% of {whose} {label} quota used"
    if event in ("key.limit_reached", "member.limit_reached"):
        what = context["who"]
        if threshold >= 100:
            return f"Tollgate: the {data['unit']} limit of {what} is reached"
        return f"Tollgate: {threshold}% of the {data['unit']} limit of {what} used"
    if event == "credits.low":
        return f"Tollgate credits are running low in {workspace.name}"
    return f"Tollgate: {whose} credits are used up"


def _context(*, workspace: Workspace, event: str, data: dict) -> dict:
    context = {
        "workspace": workspace,
        "data": data,
        "settings_url": _url("notifications:settings-page", "/notifications/"),
        "pricing_url": _url("billing:pricing", "/pricing/"),
        "credits_url": f"{settings.SITE_URL}/credits/",
    }
    if event == "quota.threshold_reached":
        context["label"] = data.get("label") or METER_LABELS.get(data["meter"], data["meter"])
        resets_at = data.get("resets_at")
        context["resets_on"] = datetime.fromisoformat(resets_at).date() if resets_at else None
    elif event == "key.limit_reached":
        name = (
            ApiKey.objects.filter(pk=data["api_key_id"], workspace=workspace)
            .values_list("name", flat=True)
            .first()
        )
        context["who"] = f'the key "{name}"' if name else f"key {data['api_key_id']}"
    elif event == "member.limit_reached":
        email = User.objects.filter(pk=data["user_id"]).values_list("email", flat=True).first()
        context["who"] = email or f"member {data['user_id']}"
    return context


def threshold_email_send(*, workspace_id: int, event: str, data: dict) -> bool:
    """Send the email of a reached ``event``; False when there is nothing to send (a workspace
    gone, email alerts turned off since, or no billing contact)."""
    if event not in EMAILED_EVENTS:
        return False
    workspace = Workspace.objects.filter(pk=workspace_id).first()
    if workspace is None or not notification_settings_get(workspace_id=workspace_id).email_enabled:
        return False
    recipients = workspace_billing_emails(workspace=workspace)
    if not recipients:
        logger.warning("threshold alert: no billing contact", extra={"workspace_id": workspace_id})
        return False
    context = _context(workspace=workspace, event=event, data=data)
    send_mail(
        subject=_subject(workspace=workspace, event=event, data=data, context=context),
        message=render_to_string(f"notifications/email/{event.replace('.', '_')}.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=recipients,
    )
    return True
