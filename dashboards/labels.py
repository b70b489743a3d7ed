"""What the customer pages print for codes of other apps (their choices are not translated)."""

from django.utils.translation import gettext_lazy, pgettext_lazy

PLAN_STATUS_LABELS = {
    "free": pgettext_lazy("plan status", "free"),
    "incomplete": pgettext_lazy("plan status", "incomplete"),
    "incomplete_expired": pgettext_lazy("plan status", "incomplete (expired)"),
    "trialing": pgettext_lazy("plan status", "trialing"),
    "active": pgettext_lazy("plan status", "active"),
    "past_due": pgettext_lazy("plan status", "past due"),
    "unpaid": pgettext_lazy("plan status", "unpaid"),
    "paused": pgettext_lazy("plan status", "paused"),
    "canceled": pgettext_lazy("plan status", "canceled"),
}
PLAN_INTERVAL_LABELS = {"month": gettext_lazy("monthly"), "year": gettext_lazy("yearly")}
QUOTA_LABELS = {
    "llm_tokens": gettext_lazy("LLM tokens"),
    "emails": gettext_lazy("Emails"),
    "requests": gettext_lazy("Requests (messages)"),
}
QUOTA_PERIODS = {"day": pgettext_lazy("quota period", "day"), "month": pgettext_lazy("quota period", "month")}


PAYMENT_KIND_LABELS = {
    "plan": gettext_lazy("Plan"),
    "credit_pack": gettext_lazy("Credit pack"),
    "other": gettext_lazy("Other"),
}
PAYMENT_STATUS_LABELS = {
    "paid": pgettext_lazy("payment status", "paid"),
    "failed": pgettext_lazy("payment status", "failed"),
}
GATEWAY_LABELS = {"stripe": "Stripe", "chargily": "Chargily Pay"}
