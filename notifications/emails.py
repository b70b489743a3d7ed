"""The emails of reached thresholds, to the workspace's billing contacts (its active owners and
billing members), when the workspace left email alerts on."""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy

from accounts.models import ApiKey, User, Workspace
from accounts.selectors import workspace_billing_contacts
from core.mail import mail_send_localized

from .selectors import notification_settings_get

logger = logging.getLogger("tollgate.notifications")

# Each email is rendered in its reader's language (core.mail): the labels are lazy.
METER_LABELS = {
    "llm_tokens": gettext_lazy("LLM tokens"),
    "emails": gettext_lazy("Emails"),
    "requests": gettext_lazy("Requests (messages)"),
}
# A key's or member's limit (accounts.services.keys.KEY_LIMIT_UNITS / KEY_LIMIT_WINDOWS).
LIMIT_UNITS = {
    "requests": pgettext_lazy("limit unit", "requests"),
    "tokens": pgettext_lazy("limit unit", "tokens"),
    "credits": pgettext_lazy("limit unit", "credits"),
    "money": pgettext_lazy("limit unit", "money"),
}
LIMIT_WINDOWS = {
    "day": pgettext_lazy("limit window", "day"),
    "month": pgettext_lazy("limit window", "month"),
    "total": pgettext_lazy("limit window", "total"),
}
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
    values = {"workspace": workspace.name, "threshold": data.get("threshold"), "unit": context.get("unit")}
    threshold = values["threshold"]
    if event == "quota.threshold_reached":
        values["meter"] = context["label"]
        if workspace.personal:
            if threshold >= 100:
                return _("Tollgate: your %(meter)s quota is used up") % values
            return _("Tollgate: %(threshold)s%% of your %(meter)s quota used") % values
        if threshold >= 100:
            return _("Tollgate: %(workspace)s's %(meter)s quota is used up") % values
        return _("Tollgate: %(threshold)s%% of %(workspace)s's %(meter)s quota used") % values
    if event in ("key.limit_reached", "member.limit_reached"):
        values["who"] = context["who"]
        if threshold >= 100:
            return _("Tollgate: the %(unit)s limit of %(who)s is reached") % values
        return _("Tollgate: %(threshold)s%% of the %(unit)s limit of %(who)s used") % values
    if event == "credits.low":
        return _("Tollgate credits are running low in %(workspace)s") % values
    if workspace.personal:
        return _("Tollgate: your credits are used up")
    return _("Tollgate: %(workspace)s's credits are used up") % values


def _context(*, workspace: Workspace, event: str, data: dict) -> dict:
    context = {
        "workspace": workspace,
        "data": data,
        "settings_url": _url("notifications:settings-page", "/notifications/"),
        "pricing_url": _url("billing:pricing", "/pricing/"),
        "credits_url": f"{settings.SITE_URL}/credits/",
    }
    if event == "quota.threshold_reached":
        # The known meters' labels in the reader's language (the event's label is English).
        context["label"] = str(METER_LABELS.get(data["meter"]) or data.get("label") or data["meter"])
        resets_at = data.get("resets_at")
        context["resets_on"] = datetime.fromisoformat(resets_at).date() if resets_at else None
    if event in ("key.limit_reached", "member.limit_reached"):
        context["unit"] = str(LIMIT_UNITS.get(data["unit"], data["unit"]))
        context["window"] = str(LIMIT_WINDOWS.get(data["window"], data["window"]))
    if event == "key.limit_reached":
        name = (
            ApiKey.objects.filter(pk=data["api_key_id"], workspace=workspace)
            .values_list("name", flat=True)
            .first()
        )
        if name:
            context["who"] = _('the key "%(name)s"') % {"name": name}
        else:
            context["who"] = _("key %(id)s") % {"id": data["api_key_id"]}
    elif event == "member.limit_reached":
        email = User.objects.filter(pk=data["user_id"]).values_list("email", flat=True).first()
        context["who"] = email or _("member %(id)s") % {"id": data["user_id"]}
    return context


def threshold_email_send(*, workspace_id: int, event: str, data: dict) -> bool:
    """Send the email of a reached ``event``; False when there is nothing to send (a workspace
    gone, email alerts turned off since, or no billing contact)."""
    if event not in EMAILED_EVENTS:
        return False
    workspace = Workspace.objects.filter(pk=workspace_id).first()
    if workspace is None or not notification_settings_get(workspace_id=workspace_id).email_enabled:
        return False
    recipients = workspace_billing_contacts(workspace=workspace)
    if not recipients:
        logger.warning("threshold alert: no billing contact", extra={"workspace_id": workspace_id})
        return False

    def build() -> tuple[str, str]:
        context = _context(workspace=workspace, event=event, data=data)
        subject = _subject(workspace=workspace, event=event, data=data, context=context)
        return subject, render_to_string(f"notifications/email/{event.replace('.', '_')}.txt", context)

    mail_send_localized(recipients=recipients, build=build)
    return True
