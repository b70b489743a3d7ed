"""Auto top-up: buy a chosen pack with the card a Stripe pack checkout saved, when the available
balance falls below the workspace's threshold, at most ``max_per_month`` times a UTC month.

- Settings (``auto_top_up_update``): members with ``billing.manage``; audited. Turning it on needs
  a pack once bought by card through Stripe (that checkout saved the card: ``credit_pack_checkout_start``
  asks for ``setup_future_usage=off_session``). The threshold is copied to
  ``CreditAccount.auto_top_up_below`` so the debit path, which holds that row, needs no query.
- Trigger (``auto_top_up_trigger``, from ``ledger._balance_move``): a debit that leaves the
  available balance below the threshold queues ``credits.auto_top_up`` after commit, at most once a
  minute per workspace (one shared-cache ``add``; nothing at all while auto top-up is off).
- Run (``auto_top_up_run``, the task): under the ``AutoTopUp`` row lock it re-checks the balance,
  counts the month's attempts in the database and claims attempt ``n`` with the idempotency key
  ``auto-top-up:<workspace>:<YYYY-MM>:<n>``; then, outside any transaction, billing charges the card
  (``off_session_payment_charge``) and fulfils through the ``credit_pack`` handler, as a checkout
  (one ``CreditPurchase``, one ``PaymentTransaction``, ``payment.succeeded``). A decline turns auto
  top-up off with the reason and emails the billing contacts (billing emits ``payment.failed``).
- Offline (DEBUG, no Stripe key), billing's simulated Stripe plays the card: it succeeds, or
  declines for Stripe's test cards (``stripe_simulated.DECLINING_PAYMENT_METHODS``).
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.translation import gettext

from accounts.models import Workspace
from accounts.selectors import workspace_billing_contacts
from accounts.services import audit_record
from billing.gateways.stripe_api import StripeServiceError, off_session_payment_charge, stripe_api_get
from billing.gateways.stripe_payments import off_session_reference
from billing.models import PaymentTransaction
from core.exceptions import ApiError
from core.locks import lock_objects
from core.mail import mail_send_localized
from notifications.services import event_emit

from ..models import AutoTopUp, AutoTopUpAttempt, CreditAccount, CreditPack, CreditPurchase

logger = logging.getLogger("tollgate.credits")

CHECKOUT_KIND = "credit_pack"  # the same handler as a pack checkout (purchases.CHECKOUT_KIND)
TRIGGER_THROTTLE_SECONDS = 60  # at most one queued run per workspace per minute
STALE_ATTEMPT = timedelta(minutes=10)  # a pending attempt this old was left by a dead worker
MAX_PER_MONTH_LIMIT = 31
MAX_THRESHOLD = 10**12


def _trigger_key(workspace_id: int) -> str:
    return f"credits:auto-top-up:{workspace_id}"


def auto_top_up_trigger(*, workspace_id: int) -> None:
    """A debit left the available balance below the threshold: queue a run after commit (at
    most once a minute; the run re-checks everything under its lock)."""
    if not cache.add(_trigger_key(workspace_id), 1, timeout=TRIGGER_THROTTLE_SECONDS):
        return
    from ..tasks import credit_auto_top_up_task  # noqa: PLC0415 (credits.tasks imports the services: a task is queued lazily to avoid a cycle)

    # robust: a broker that is down loses this run (the next debit queues another), not the debit.
    transaction.on_commit(lambda: credit_auto_top_up_task.delay(workspace_id), robust=True)


def _account_locked(workspace_id: int) -> CreditAccount:
    locked = lock_objects(CreditAccount.objects.filter(workspace_id=workspace_id))
    if locked:
        return locked[0]
    CreditAccount.objects.get_or_create(workspace_id=workspace_id)
    return lock_objects(CreditAccount.objects.filter(workspace_id=workspace_id))[0]


def _saved_card_purchase(*, workspace_id: int) -> CreditPurchase | None:
    """The newest pack bought by card through Stripe (its PaymentIntent names the saved card)."""
    return (
        CreditPurchase.objects.filter(workspace_id=workspace_id, stripe_payment_intent_id__startswith="pi_")
        .order_by("-created_at")
        .first()
    )


# --- settings ----------------------------------------------------------------------------------


def auto_top_up_update(
    *,
    workspace: Workspace,
    actor,
    is_enabled: bool | None = None,
    pack_code: str | None = None,
    threshold_credits: int | None = None,
    max_per_month: int | None = None,
    request=None,
    now: datetime | None = None,
) -> AutoTopUp:
    """Change the workspace's auto top-up (only the fields given). Raises ``ApiError`` 400 with
    the offending ``param``. Who may (``billing.manage``) is the caller's check. Turning it on
    while the balance is already below the threshold queues a run at once."""
    now = now or timezone.now()
    pack = None
    if pack_code is not None:
        pack = CreditPack.objects.filter(code=str(pack_code), is_active=True).first()
        if pack is None:
            raise ApiError("invalid_request", f"Unknown credit pack: {pack_code}", param="packId")
    if threshold_credits is not None and not 0 < threshold_credits <= MAX_THRESHOLD:
        raise ApiError(
            "invalid_request",
            "thresholdCredits must be a positive number of credits.",
            param="thresholdCredits",
        )
    if max_per_month is not None and not 1 <= max_per_month <= MAX_PER_MONTH_LIMIT:
        raise ApiError(
            "invalid_request",
            f"maxPerMonth must be between 1 and {MAX_PER_MONTH_LIMIT}.",
            param="maxPerMonth",
        )
    with transaction.atomic():
        account = _account_locked(workspace.pk)
        row, _ = AutoTopUp.objects.get_or_create(workspace=workspace)
        row = lock_objects(AutoTopUp.objects.filter(pk=row.pk))[0]
        before = _settings_snapshot(row)
        turning_on = is_enabled is True and not row.is_enabled
        if pack is not None:
            row.pack = pack
        if threshold_credits is not None:
            row.threshold_credits = threshold_credits
        if max_per_month is not None:
            row.max_per_month = max_per_month
        if is_enabled is not None:
            row.is_enabled = is_enabled
        if row.is_enabled:
            if row.pack is None or not row.pack.is_active:
                raise ApiError("invalid_request", "Choose a pack to buy.", param="packId")
            if row.threshold_credits <= 0:
                raise ApiError(
                    "invalid_request", "Set the balance to top up below.", param="thresholdCredits"
                )
        if turning_on:
            if _saved_card_purchase(workspace_id=workspace.pk) is None:
                raise ApiError(
                    "invalid_request",
                    "Buy a pack by card first: auto top-up charges the card saved by that purchase.",
                    param="enabled",
                )
            # The newest card is found again from the newest purchase on the first top-up.
            row.stripe_customer_id = row.stripe_payment_method_id = ""
            row.disabled_reason = ""
        row.updated_by = actor if actor is not None and getattr(actor, "pk", None) else None
        row.save()
        below = row.threshold_credits if row.is_enabled else None
        if account.auto_top_up_below != below:
            CreditAccount.objects.filter(pk=account.pk).update(auto_top_up_below=below, updated_at=now)
        after = _settings_snapshot(row)
        if after != before:
            audit_record(
                action="credits.auto_top_up_updated",
                actor=actor,
                workspace=workspace,
                target=f"auto_top_up:{row.pk}",
                details={"before": before, "after": after},
                request=request,
                now=now,
            )
        if row.is_enabled and account.available < row.threshold_credits:
            auto_top_up_trigger(workspace_id=workspace.pk)
    return row


def _settings_snapshot(row: AutoTopUp) -> dict:
    return {
        "enabled": row.is_enabled,
        "pack": row.pack.code if row.pack_id else None,
        "threshold_credits": row.threshold_credits,
        "max_per_month": row.max_per_month,
    }


def _auto_top_up_disable_locked(*, row: AutoTopUp, reason: str, now: datetime) -> None:
    """Turn auto top-up off after a failure (inside a transaction, ``row`` locked)."""
    account = _account_locked(row.workspace_id)
    AutoTopUp.objects.filter(pk=row.pk).update(
        is_enabled=False, disabled_reason=reason[:500], last_failure_at=now, updated_at=now
    )
    CreditAccount.objects.filter(pk=account.pk).update(auto_top_up_below=None, updated_at=now)
    audit_record(
        action="credits.auto_top_up_disabled",
        actor=None,
        workspace=row.workspace,
        target=f"auto_top_up:{row.pk}",
        details={"reason": reason[:500]},
        now=now,
    )


# --- the run -----------------------------------------------------------------------------------


def _month_start(now: datetime) -> date:
    return now.date().replace(day=1)


def _attempt_claim(*, workspace_id: int, attempt_id: int | None, now: datetime) -> AutoTopUpAttempt | str:
    """The attempt to charge now, or why there is none. Runs under the AutoTopUp row lock, so
    concurrent runs claim one attempt between them."""
    with transaction.atomic():
        rows = lock_objects(AutoTopUp.objects.filter(workspace_id=workspace_id))
        if not rows or not rows[0].is_enabled:
            return "disabled"
        row = rows[0]
        pending = AutoTopUpAttempt.objects.filter(
            workspace_id=workspace_id, status=AutoTopUpAttempt.Status.PENDING
        )
        for attempt in pending.order_by("pk"):
            if CreditPurchase.objects.filter(checkout_reference=attempt.payment_reference).exists():
                _attempt_finish(attempt=attempt, status=AutoTopUpAttempt.Status.SUCCEEDED, now=now)
                continue  # paid meanwhile (Stripe's payment_intent.succeeded fulfilled it)
            payment_status = (
                PaymentTransaction.objects.filter(reference=attempt.payment_reference)
                .values_list("status", flat=True)
                .first()
            )
            if payment_status == PaymentTransaction.Status.FAILED:  # a processing payment failed later
                return _attempt_fail(
                    attempt=attempt,
                    code="payment_failed",
                    reason="The card was not charged.",
                    emitted=True,
                    now=now,
                )
            if attempt.pk == attempt_id or attempt.updated_at <= now - STALE_ATTEMPT:
                AutoTopUpAttempt.objects.filter(pk=attempt.pk).update(updated_at=now)
                return attempt  # our own retry, or one a dead worker left: same key, same payment
            return "in_progress"
        account = CreditAccount.objects.filter(workspace_id=workspace_id).first()
        available = account.available if account is not None else 0
        if available >= row.threshold_credits:
            return "not_needed"
        month = _month_start(now)
        this_month = AutoTopUpAttempt.objects.filter(workspace_id=workspace_id, month=month)
        if this_month.exclude(status=AutoTopUpAttempt.Status.FAILED).count() >= row.max_per_month:
            logger.info("auto top-up: monthly maximum reached", extra={"workspace_id": workspace_id})
            return "monthly_limit"
        pack = row.pack
        if pack is None or not pack.is_active:
            _auto_top_up_disable_locked(row=row, reason="The chosen pack is no longer on sale.", now=now)
            transaction.on_commit(
                lambda: _failure_notify(
                    workspace_id=workspace_id, reason="The chosen pack is no longer on sale.", emitted=False
                )
            )
            return "failed"
        number = (this_month.order_by("-number").values_list("number", flat=True).first() or 0) + 1
        key = f"auto-top-up:{workspace_id}:{month:%Y-%m}:{number}"
        return AutoTopUpAttempt.objects.create(
            workspace_id=workspace_id,
            month=month,
            number=number,
            idempotency_key=key,
            pack=pack,
            credits=pack.credits,
            amount_minor=pack.price_minor,
            currency=pack.currency,
            payment_reference=off_session_reference(key),
        )


def auto_top_up_pending_attempt_id(*, workspace_id: int) -> int | None:
    """The attempt a retried run resumes (the one it claimed before Stripe failed)."""
    return (
        AutoTopUpAttempt.objects.filter(workspace_id=workspace_id, status=AutoTopUpAttempt.Status.PENDING)
        .order_by("-pk")
        .values_list("pk", flat=True)
        .first()
    )


def _attempt_finish(*, attempt: AutoTopUpAttempt, status: str, now: datetime, **changes) -> bool:
    return bool(
        AutoTopUpAttempt.objects.filter(pk=attempt.pk, status=AutoTopUpAttempt.Status.PENDING).update(
            status=status, completed_at=now, updated_at=now, **changes
        )
    )


def _saved_card_get(*, workspace_id: int) -> tuple[str, str]:
    """(customer, payment method) to charge: the stored ones, else those of the PaymentIntent of
    the newest card purchase (asked of Stripe once, then stored). ("", "") when there is none.
    Raises ``StripeServiceError``."""
    row = (
        AutoTopUp.objects.filter(workspace_id=workspace_id)
        .values("stripe_customer_id", "stripe_payment_method_id")
        .first()
    )
    if row and row["stripe_customer_id"] and row["stripe_payment_method_id"]:
        return row["stripe_customer_id"], row["stripe_payment_method_id"]
    purchase = _saved_card_purchase(workspace_id=workspace_id)
    if purchase is None:
        return "", ""
    intent = stripe_api_get().payment_intent_retrieve(payment_intent_id=purchase.stripe_payment_intent_id)
    customer = intent.get("customer")
    method = intent.get("payment_method")
    customer_id = str(customer.get("id") if isinstance(customer, dict) else customer or "")
    method_id = str(method.get("id") if isinstance(method, dict) else method or "")
    if customer_id and method_id:
        AutoTopUp.objects.filter(workspace_id=workspace_id).update(
            stripe_customer_id=customer_id, stripe_payment_method_id=method_id
        )
    return customer_id, method_id


def auto_top_up_run(*, workspace_id: int, attempt_id: int | None = None, now: datetime | None = None) -> str:
    """Buy the pack if the workspace still needs it: ``succeeded``, ``failed``, ``processing``,
    or why nothing was bought (``disabled``, ``not_needed``, ``in_progress``,
    ``monthly_limit``). Safe to run twice and concurrently. Raises ``StripeServiceError`` for a
    transient Stripe failure (the attempt stays pending; retry with its ``attempt_id``)."""
    now = now or timezone.now()
    claimed = _attempt_claim(workspace_id=workspace_id, attempt_id=attempt_id, now=now)
    if isinstance(claimed, str):
        return claimed
    attempt = claimed
    workspace = Workspace.objects.get(pk=workspace_id)
    try:
        customer_id, method_id = _saved_card_get(workspace_id=workspace_id)
    except StripeServiceError as exc:
        if exc.retryable:
            raise
        customer_id = method_id = ""
    if not (customer_id and method_id):
        return _attempt_fail(
            attempt=attempt,
            code="no_saved_card",
            reason="No saved card to charge: buy a pack by card, then turn auto top-up on again.",
            emitted=False,
            now=now,
        )
    pack = attempt.pack
    metadata = {
        "pack": pack.code if pack else "",
        "credits": str(attempt.credits),
        "auto_top_up_attempt": str(attempt.pk),
        **({"expires_after_days": str(pack.expires_after_days)} if pack and pack.expires_after_days else {}),
    }
    result = off_session_payment_charge(
        workspace=workspace,
        kind=CHECKOUT_KIND,
        amount_minor=attempt.amount_minor,
        currency=attempt.currency,
        customer_id=customer_id,
        payment_method_id=method_id,
        metadata=metadata,
        description=f"Auto top-up: {pack.name if pack else attempt.credits} ({attempt.credits} credits)",
        idempotency_key=attempt.idempotency_key,
        now=now,
    )
    if result.status == "succeeded":
        _attempt_finish(
            attempt=attempt,
            status=AutoTopUpAttempt.Status.SUCCEEDED,
            now=now,
            stripe_payment_intent_id=result.payment_intent_id[:255],
        )
        logger.info("auto top-up bought", extra={"workspace_id": workspace_id, "credits": attempt.credits})
        return "succeeded"
    if result.status == "processing":
        AutoTopUpAttempt.objects.filter(pk=attempt.pk).update(
            stripe_payment_intent_id=result.payment_intent_id[:255]
        )
        return "processing"
    AutoTopUpAttempt.objects.filter(pk=attempt.pk).update(
        stripe_payment_intent_id=result.payment_intent_id[:255]
    )
    reason = f"The card was not charged: {result.message}" if result.message else "The card was not charged."
    return _attempt_fail(attempt=attempt, code=result.error_code, reason=reason, emitted=True, now=now)


def _attempt_fail(*, attempt: AutoTopUpAttempt, code: str, reason: str, emitted: bool, now: datetime) -> str:
    """Record the failure, turn auto top-up off and tell the billing contacts (once per attempt).
    ``emitted``: billing already emitted ``payment.failed`` for a declined charge."""
    with transaction.atomic():
        rows = lock_objects(AutoTopUp.objects.filter(workspace_id=attempt.workspace_id))
        if not _attempt_finish(
            attempt=attempt, status=AutoTopUpAttempt.Status.FAILED, now=now, error_code=code[:100]
        ):
            return "failed"  # another run recorded it
        if rows and rows[0].is_enabled:
            _auto_top_up_disable_locked(row=rows[0], reason=reason, now=now)
        workspace_id = attempt.workspace_id
        transaction.on_commit(
            lambda: _failure_notify(workspace_id=workspace_id, reason=reason, emitted=emitted)
        )
    logger.warning("auto top-up failed", extra={"workspace_id": attempt.workspace_id, "code": code})
    return "failed"


def _failure_notify(*, workspace_id: int, reason: str, emitted: bool) -> None:
    workspace = Workspace.objects.filter(pk=workspace_id).first()
    if workspace is None:
        return
    if not emitted:
        event_emit(workspace=workspace, type="payment.failed", data={"kind": CHECKOUT_KIND, "reason": reason})
    auto_top_up_failed_email_send(workspace=workspace, reason=reason)


def auto_top_up_failed_email_send(*, workspace: Workspace, reason: str) -> None:
    """Tell the billing contacts, each in their language, that auto top-up is off and why
    (nothing when there are none). ``reason`` is the stored one, in English."""
    recipients = workspace_billing_contacts(workspace=workspace)
    if not recipients:
        logger.warning("auto top-up failed: no billing contact", extra={"workspace_id": workspace.pk})
        return
    context = {"workspace": workspace, "reason": reason, "credits_url": f"{settings.SITE_URL}/credits/"}

    def build() -> tuple[str, str]:
        subject = gettext("Tollgate auto top-up failed and was turned off in %(workspace)s") % {
            "workspace": workspace.name
        }
        return subject, render_to_string("credits/email/auto_top_up_failed.txt", context)

    mail_send_localized(recipients=recipients, build=build)
