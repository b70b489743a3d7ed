"""Writes for billing, one module per concern:

- ``catalog``: plan catalogue seed and cache invalidation;
- ``quota``: reserve → settle/release (single meter and batched, with their SQL), stale
  release, period rollover;
- ``alerts``: quota alert thresholds, scheduling and emails;
- ``checkout``: open a checkout at a gateway (plans in EUR or DZD, other apps' kinds), redirect
  validation, billing portal;
- ``payments``: payment-transaction rows and checkout outcomes (fulfil once, expire), any gateway;
- ``subscriptions``: subscription/invoice sync, plan activation, Chargily periods and reminders,
  emails;
- ``webhooks``: the one webhook pipeline (verify → store → lock → dispatch → mark) for every
  gateway.

Dependencies go one way: quota → alerts; checkout → subscriptions, payments. Gateways
(``billing.gateways``) use these services; checkout and webhooks reach a gateway through
``billing.registry.gateway_get``, never by import. Callers import from ``billing.services``;
the names below are that interface.
"""

from .alerts import (
    QUOTA_ALERT_THRESHOLDS,
    quota_alert_may_be_due,
    quota_alert_send,
    quota_thresholds_reevaluate,
)
from .catalog import (
    plan_catalog_invalidate,
    plan_catalog_seed,
)
from .checkout import (
    checkout_redirect_url_validate,
    checkout_session_start,
    plan_chargily_checkout_start,
    plan_checkout_start,
    simulated_checkout_cancel,
)
from .key_limits import (
    KeyLimitExceeded,
    KeyLimitReading,
    key_holds_release,
    key_holds_release_stale,
    key_holds_settle,
    key_limits_reserve,
    key_limits_usage_get,
    member_limits_usage_get,
    money_micros_per_minor,
)
from .payments import (
    checkout_fulfil,
    checkout_session_expire,
    payment_transaction_record,
    payment_transaction_settle,
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
from .subscriptions import (
    CHARGILY_SUBSCRIPTION_PREFIX,
    PLAN_CHECKOUT_KIND,
    chargily_periods_expire,
    chargily_renewal_reminders_send,
    plan_active_email_send,
    subscription_activate,
    subscription_invoice_paid,
    subscription_invoice_payment_failed,
    subscription_payment_failed_email_send,
    subscription_period_activate,
    subscription_sync,
)
from .webhooks import (
    ChargilyEventProcessingError,
    StripeEventProcessingError,
    WebhookEventProcessingError,
    chargily_event_process,
    chargily_event_reprocess,
    chargily_event_store,
    stripe_event_process,
    stripe_event_reprocess,
    stripe_event_store,
    webhook_event_process,
    webhook_event_reprocess,
    webhook_event_store,
    webhook_receive,
)

__all__ = [
    "KeyLimitExceeded",
    "KeyLimitReading",
    "key_holds_release",
    "key_holds_release_stale",
    "key_holds_settle",
    "key_limits_reserve",
    "key_limits_usage_get",
    "member_limits_usage_get",
    "money_micros_per_minor",
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
    "quota_thresholds_reevaluate",
    "PLAN_CHECKOUT_KIND",
    "checkout_redirect_url_validate",
    "checkout_session_start",
    "plan_checkout_start",
    "simulated_checkout_cancel",
    "payment_transaction_record",
    "payment_transaction_settle",
    "plan_chargily_checkout_start",
    "WebhookEventProcessingError",
    "webhook_event_store",
    "webhook_event_process",
    "webhook_event_reprocess",
    "webhook_receive",
    "StripeEventProcessingError",
    "stripe_event_store",
    "stripe_event_process",
    "stripe_event_reprocess",
    "ChargilyEventProcessingError",
    "chargily_event_store",
    "chargily_event_process",
    "chargily_event_reprocess",
    "checkout_fulfil",
    "checkout_session_expire",
    "subscription_sync",
    "subscription_invoice_paid",
    "subscription_invoice_payment_failed",
    "subscription_activate",
    "CHARGILY_SUBSCRIPTION_PREFIX",
    "subscription_period_activate",
    "chargily_periods_expire",
    "chargily_renewal_reminders_send",
    "plan_active_email_send",
    "subscription_payment_failed_email_send",
]
