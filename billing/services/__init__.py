"""Writes for billing, one module per concern:

- ``catalog``: plan catalogue seed and cache invalidation;
- ``quota``: reserve → settle/release (single meter and batched, with their SQL), stale
  release, period rollover;
- ``alerts``: quota alert thresholds, scheduling and emails;
- ``checkout``: checkout sessions, redirect validation, billing portal, payment transactions;
- ``stripe_events``: webhook secret, event store → process → dispatch, checkout outcomes;
- ``stripe_subscriptions``: subscription/invoice sync, plan activation, Chargily periods, emails.

Dependencies go one way: quota → alerts; stripe_events → stripe_subscriptions → checkout.
Callers import from ``billing.services``; the names below are that interface.
"""

from .alerts import (
    QUOTA_ALERT_THRESHOLDS,
    quota_alert_may_be_due,
    quota_alert_send,
)
from .catalog import (
    plan_catalog_invalidate,
    plan_catalog_seed,
)
from .checkout import (
    PLAN_CHECKOUT_KIND,
    billing_portal_session_start,
    checkout_redirect_url_validate,
    checkout_session_start,
    payment_transaction_record,
    payment_transaction_settle,
    plan_checkout_start,
    simulated_checkout_cancel,
    simulated_checkout_enabled,
    simulated_checkout_event_build,
)
from .quota import (
    QuotaExceeded,
    QuotaSettleSql,
    _rules_for,
    quota_period_rollover,
    quota_release,
    quota_release_many,
    quota_release_many_fast,
    quota_reservations_release_stale,
    quota_reserve,
    quota_reserve_many,
    quota_reserve_many_fast,
    quota_settle,
    quota_settle_finish,
    quota_settle_many,
    quota_settle_pairs_sql,
    quota_settle_sql,
)
from .stripe_events import (
    LOCAL_WEBHOOK_SECRET,
    StripeEventProcessingError,
    checkout_fulfil,
    checkout_session_expire,
    checkout_session_fulfil,
    checkout_session_payment_fail,
    stripe_event_process,
    stripe_event_reprocess,
    stripe_event_store,
    stripe_webhook_secret_get,
)
from .stripe_subscriptions import (
    CHARGILY_SUBSCRIPTION_PREFIX,
    plan_active_email_send,
    subscription_activate,
    subscription_invoice_paid,
    subscription_invoice_payment_failed,
    subscription_payment_failed_email_send,
    subscription_period_activate,
    subscription_sync,
)

__all__ = [
    "plan_catalog_invalidate",
    "plan_catalog_seed",
    "QuotaExceeded",
    "quota_reserve",
    "quota_settle",
    "quota_release",
    "_rules_for",
    "quota_reserve_many",
    "quota_reserve_many_fast",
    "quota_settle_many",
    "QuotaSettleSql",
    "quota_settle_sql",
    "quota_settle_pairs_sql",
    "quota_settle_finish",
    "quota_release_many",
    "quota_release_many_fast",
    "quota_reservations_release_stale",
    "quota_period_rollover",
    "QUOTA_ALERT_THRESHOLDS",
    "quota_alert_may_be_due",
    "quota_alert_send",
    "PLAN_CHECKOUT_KIND",
    "simulated_checkout_enabled",
    "checkout_redirect_url_validate",
    "checkout_session_start",
    "plan_checkout_start",
    "billing_portal_session_start",
    "simulated_checkout_cancel",
    "payment_transaction_record",
    "payment_transaction_settle",
    "simulated_checkout_event_build",
    "LOCAL_WEBHOOK_SECRET",
    "stripe_webhook_secret_get",
    "StripeEventProcessingError",
    "stripe_event_store",
    "stripe_event_process",
    "stripe_event_reprocess",
    "checkout_session_fulfil",
    "checkout_fulfil",
    "checkout_session_payment_fail",
    "checkout_session_expire",
    "subscription_sync",
    "subscription_invoice_paid",
    "subscription_invoice_payment_failed",
    "subscription_activate",
    "CHARGILY_SUBSCRIPTION_PREFIX",
    "subscription_period_activate",
    "plan_active_email_send",
    "subscription_payment_failed_email_send",
]
