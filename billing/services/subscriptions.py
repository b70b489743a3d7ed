"""Subscriptions: mirror Stripe subscription and invoice events onto our row, activate a plan on
a paid checkout (Stripe or a Chargily period), end Chargily periods and remind before they end,
and the plan emails.

Events only move a subscription forward (an older or lesser state is ignored). Also holds the
two helpers that read Stripe objects (``_ts``, ``_id``), shared with the Stripe gateway.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Exists, F, OuterRef
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext

from accounts.models import Membership
from accounts.selectors import api_key_active_count, workspace_billing_contacts
from accounts.services import api_key_create, api_key_reveal_link_create, audit_record
from core.locks import lock_objects
from core.mail import mail_send_localized
from notifications.services import event_emit

from ..fulfilment import CheckoutEventRejected
from ..models import CheckoutSession, Gateway, Plan, StripeEvent, Subscription
from ..selectors import workspace_for_metadata_get, workspace_plan_cache_key
from ..subscriptions import LIVE_STATUSES, subscription_live_claim, subscription_workspace_lock
from .alerts import quota_thresholds_reevaluate

logger = logging.getLogger("tollgate.billing")

PLAN_CHECKOUT_KIND = "plan"  # the checkout kind billing fulfils itself (``subscription_activate``)


def _add_interval(at: datetime, interval: str) -> datetime:
    return at + (relativedelta(years=1) if interval == Plan.Interval.YEAR else relativedelta(months=1))


def _ts(value) -> datetime | None:
    """A Stripe unix timestamp as an aware datetime (None when absent or malformed)."""
    try:
        return datetime.fromtimestamp(int(value), tz=UTC) if value not in (None, "") else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _id(value) -> str:
    """Stripe fields that may be an id or an expanded object."""
    if isinstance(value, dict):
        return str(value.get("id") or "")
    return str(value or "")


def _subscription_cache_forget(workspace_id: int) -> None:
    """After the plan changes: forget the cached plan, then resolve the quota alerts the new
    limits no longer hold (an upgrade)."""
    transaction.on_commit(lambda: cache.delete(workspace_plan_cache_key(workspace_id)))
    transaction.on_commit(lambda: quota_thresholds_reevaluate(workspace_id=workspace_id), robust=True)


def _subscription_audit(*, row: Subscription, action: str, actor=None, **details) -> None:
    """One audit event for a change of the workspace's plan or subscription (``actor`` None:
    a gateway's webhook or a scheduled task made it)."""
    audit_record(
        action=action,
        actor=actor,
        workspace=row.workspace,
        target=f"subscription:{row.pk}",
        details={"plan": row.plan.code, "status": row.status, "gateway": row.gateway, **details},
    )


# A subscription never comes back from canceled; within one second, the further state wins.
_STATUS_RANK = {
    Subscription.Status.INCOMPLETE: 0,
    Subscription.Status.TRIALING: 1,
    Subscription.Status.ACTIVE: 1,
    Subscription.Status.PAST_DUE: 1,
    Subscription.Status.UNPAID: 1,
    Subscription.Status.PAUSED: 1,
    Subscription.Status.INCOMPLETE_EXPIRED: 2,
    Subscription.Status.CANCELED: 2,
}


def _event_is_current(*, row: Subscription, event_created_at: datetime, status: str) -> bool:
    """Whether an event may overwrite the row: discards stale, out-of-order deliveries."""
    if _STATUS_RANK.get(row.status, 0) == 2 and _STATUS_RANK.get(status, 0) < 2:
        return False
    if row.stripe_event_at is None or event_created_at > row.stripe_event_at:
        return True
    return event_created_at == row.stripe_event_at and _STATUS_RANK.get(status, 0) >= _STATUS_RANK.get(
        row.status, 0
    )


def _subscription_period_end(obj: dict) -> datetime | None:
    # Recent API versions moved the period to the subscription items.
    if obj.get("current_period_end"):
        return _ts(obj["current_period_end"])
    ends = [item.get("current_period_end") for item in (obj.get("items") or {}).get("data") or []]
    ends = [end for end in ends if end]
    return _ts(max(ends)) if ends else None


def _subscription_plan(obj: dict) -> Plan | None:
    prices = [_id(item.get("price") or {}) for item in (obj.get("items") or {}).get("data") or []]
    prices = [price for price in prices if price]
    if prices:
        plan = Plan.objects.filter(stripe_price_id__in=prices).exclude(stripe_price_id="").first()
        if plan is not None:
            return plan
    code = (obj.get("metadata") or {}).get("plan_code")
    return Plan.objects.filter(code=code).first() if code else None


def subscription_sync(*, stripe_subscription: dict, event_type: str, event_created_at: datetime) -> bool:
    """Apply a ``customer.subscription.*`` event to our mirror, unless a newer one already was.

    Subscriptions we did not start (no ``kind=plan`` metadata and no row) are not ours:
    another app's handler (organizations) takes them. The metadata names the workspace
    (``workspace_id``; subscriptions started before workspaces carry ``user_id``, which means
    that user's personal workspace).
    """
    sub_id = _id(stripe_subscription.get("id"))
    metadata = stripe_subscription.get("metadata") or {}
    status = stripe_subscription.get("status") or Subscription.Status.INCOMPLETE
    if event_type == "customer.subscription.deleted":
        status = Subscription.Status.CANCELED
    row = Subscription.objects.filter(stripe_subscription_id=sub_id).first() if sub_id else None
    if row is None:
        names_tenant = any(str(metadata.get(key, "")).isdigit() for key in ("workspace_id", "user_id"))
        if metadata.get("kind") != PLAN_CHECKOUT_KIND or not names_tenant:
            return False
        workspace = workspace_for_metadata_get(metadata=metadata)
        plan = _subscription_plan(stripe_subscription)
        if workspace is None or plan is None:
            raise ValueError(f"subscription {sub_id}: unknown workspace or plan in metadata")
        # The metadata names a workspace: only believe it if a plan checkout was opened for it.
        if not CheckoutSession.objects.filter(
            workspace=workspace,
            kind=PLAN_CHECKOUT_KIND,
            gateway=Gateway.STRIPE,
            metadata__plan_code=plan.code,
        ).exists():
            raise CheckoutEventRejected(f"subscription {sub_id}: no plan checkout of ours for its workspace")
        subscription_workspace_lock(workspace_id=workspace.pk)
        row, _ = Subscription.objects.get_or_create(
            stripe_subscription_id=sub_id,
            defaults={
                "workspace": workspace,
                "plan": plan,
                "stripe_customer_id": _id(stripe_subscription.get("customer")),
            },
        )
    else:
        subscription_workspace_lock(workspace_id=row.workspace_id)
    row = lock_objects(Subscription.objects.filter(pk=row.pk))[0]
    before = (row.status, row.plan_id, row.cancel_at_period_end)
    if not _event_is_current(row=row, event_created_at=event_created_at, status=status):
        logger.info(
            "stale subscription event discarded", extra={"subscription_id": row.pk, "type": event_type}
        )
        return True
    if status in LIVE_STATUSES and row.status not in LIVE_STATUSES and not subscription_live_claim(row=row):
        return True  # a newer subscription is live: this one was ended (and is canceled at Stripe)
    row.status = status
    row.cancel_at_period_end = bool(stripe_subscription.get("cancel_at_period_end"))
    row.current_period_end = _subscription_period_end(stripe_subscription) or row.current_period_end
    row.ended_at = _ts(stripe_subscription.get("ended_at")) or (
        event_created_at if status == Subscription.Status.CANCELED else None
    )
    row.stripe_customer_id = _id(stripe_subscription.get("customer")) or row.stripe_customer_id
    row.plan = _subscription_plan(stripe_subscription) or row.plan
    row.stripe_event_at = event_created_at
    row.save()
    _subscription_cache_forget(row.workspace_id)
    if (row.status, row.plan_id, row.cancel_at_period_end) != before:
        _subscription_audit(
            row=row, action="subscription.updated", cancel_at_period_end=row.cancel_at_period_end
        )
        event_emit(
            workspace=row.workspace_id,
            type="subscription.updated",
            data={
                "plan": row.plan.code,
                "status": row.status,
                "cancel_at_period_end": row.cancel_at_period_end,
            },
        )
    return True


def _invoice_subscription_id(invoice: dict) -> str:
    if invoice.get("subscription"):
        return _id(invoice["subscription"])
    details = ((invoice.get("parent") or {}).get("subscription_details")) or {}
    return _id(details.get("subscription"))


def subscription_invoice_paid(*, invoice: dict, event_created_at: datetime) -> bool:
    """A renewal was paid: extend the period; a past-due subscription is active again."""
    row = Subscription.objects.filter(
        stripe_subscription_id=_invoice_subscription_id(invoice) or None
    ).first()
    if row is None:
        return False
    subscription_workspace_lock(workspace_id=row.workspace_id)
    row = lock_objects(Subscription.objects.filter(pk=row.pk))[0]
    ends = [(line.get("period") or {}).get("end") for line in (invoice.get("lines") or {}).get("data") or []]
    ends = [_ts(end) for end in ends if end]
    if ends and (row.current_period_end is None or max(ends) > row.current_period_end):
        row.current_period_end = max(ends)
    if (
        row.status in (Subscription.Status.PAST_DUE, Subscription.Status.UNPAID)
        and _event_is_current(row=row, event_created_at=event_created_at, status=Subscription.Status.ACTIVE)
        and (row.status in LIVE_STATUSES or subscription_live_claim(row=row))
    ):
        row.status = Subscription.Status.ACTIVE
        row.stripe_event_at = event_created_at
    row.save()
    _subscription_cache_forget(row.workspace_id)
    _subscription_audit(
        row=row,
        action="payment.invoice_paid",
        invoice=_id(invoice.get("id")),
        amount_paid_minor=int(invoice.get("amount_paid") or 0),
        currency=str(invoice.get("currency") or "").lower(),
    )
    return True


def subscription_invoice_payment_failed(*, invoice: dict, event_created_at: datetime) -> bool:
    """A renewal payment failed: past due (the plan stays while Stripe retries); tell the
    workspace's billing contacts."""
    row = Subscription.objects.filter(
        stripe_subscription_id=_invoice_subscription_id(invoice) or None
    ).first()
    if row is None:
        return False
    row = lock_objects(Subscription.objects.filter(pk=row.pk))[0]
    if row.status == Subscription.Status.ACTIVE and _event_is_current(
        row=row, event_created_at=event_created_at, status=Subscription.Status.PAST_DUE
    ):
        row.status = Subscription.Status.PAST_DUE
        row.stripe_event_at = event_created_at
        row.save()
        _subscription_cache_forget(row.workspace_id)
    _subscription_audit(
        row=row,
        action="payment.invoice_failed",
        invoice=_id(invoice.get("id")),
        amount_due_minor=int(invoice.get("amount_due") or 0),
        currency=str(invoice.get("currency") or "").lower(),
    )
    from ..tasks import subscription_payment_failed_email_task  # noqa: PLC0415 (billing.tasks imports the services: a task is queued lazily to avoid a cycle)

    subscription_id = row.pk
    transaction.on_commit(
        lambda: subscription_payment_failed_email_task.delay(subscription_id=subscription_id)
    )
    return True


def subscription_activate(*, session: dict, event_id: str, now: datetime | None = None) -> Subscription:
    """The ``plan`` checkout handler: the paid session activates the plan of the workspace.

    Called once per session (CheckoutFulfilment), inside the event's transaction; the workspace
    and plan are our checkout row's (``billing.fulfilment``: ``metadata.workspace_id``, or for
    a checkout opened before workspaces ``metadata.user_id``, that user's personal workspace).
    A live subscription of the workspace from an earlier checkout is replaced
    (``billing.subscriptions``). On the workspace's first activation, a key is created if it
    has none (in the name of the member who opened the checkout) and the "plan active" email
    carries them a one-time reveal link, never the key. A Chargily payment
    (``session["gateway"]``) activates one period instead: Chargily has no recurring
    subscriptions.
    """
    now = now or timezone.now()
    metadata = session.get("metadata") or {}
    workspace = workspace_for_metadata_get(metadata=metadata, fallback_id=session.get("client_reference_id"))
    plan = Plan.objects.filter(code=metadata.get("plan_code", "")).first()
    reference = _id(session.get("id"))
    if session.get("gateway") == Gateway.CHARGILY:
        if workspace is None or plan is None:
            raise ValueError(f"chargily checkout {session.get('id')}: missing workspace or plan")
        return subscription_period_activate(workspace=workspace, plan=plan, reference=reference, now=now)
    sub_id = _id(session.get("subscription"))
    if workspace is None or plan is None or not sub_id:
        raise ValueError(f"checkout session {session.get('id')}: missing workspace, plan or subscription")
    event_created_at = (
        StripeEvent.objects.filter(stripe_event_id=event_id)
        .values_list("stripe_created_at", flat=True)
        .first()
        or now
    )
    subscription_workspace_lock(workspace_id=workspace.pk)
    row, created = Subscription.objects.get_or_create(
        stripe_subscription_id=sub_id,
        defaults={
            "workspace": workspace,
            "plan": plan,
            "status": Subscription.Status.INCOMPLETE,  # live below, once no other one is
            "stripe_customer_id": _id(session.get("customer")),
            "current_period_end": _add_interval(now, plan.interval),
            "stripe_event_at": event_created_at,
        },
    )
    row = lock_objects(Subscription.objects.filter(pk=row.pk))[0]
    if row.workspace_id != workspace.pk:
        raise ValueError(f"subscription {sub_id} belongs to another workspace")
    if (
        row.status == Subscription.Status.INCOMPLETE
        and (
            created
            or _event_is_current(
                row=row, event_created_at=event_created_at, status=Subscription.Status.ACTIVE
            )
        )
        and subscription_live_claim(row=row, now=now)
    ):
        row.status = Subscription.Status.ACTIVE
        row.stripe_event_at = event_created_at
    row.checkout_reference = reference
    row.stripe_customer_id = row.stripe_customer_id or _id(session.get("customer"))
    # A session whose subscription already ended (out-of-order delivery) activates nothing.
    first_activation = row.activated_at is None and row.status in Subscription.ENTITLED_STATUSES
    if first_activation:
        row.activated_at = now
    row.save()
    _subscription_cache_forget(workspace.pk)
    if first_activation:
        _subscription_audit(row=row, action="subscription.activated", reference=reference)
        _subscription_welcome(row=row, workspace=workspace, reference=reference, now=now)
    logger.info("subscription activated", extra={"subscription_id": row.pk, "plan": plan.code})
    return row


def _checkout_opener(*, workspace, reference: str):
    """The member who opened the checkout ``reference``, while still a member; else the owner
    of a personal workspace (checkouts opened before workspaces recorded nobody); else None."""
    opener_id = (
        CheckoutSession.objects.filter(checkout_reference=reference, workspace=workspace)
        .values_list("created_by_id", flat=True)
        .first()
    )
    if opener_id is not None:
        membership = (
            Membership.objects.select_related("user")
            .filter(workspace=workspace, user_id=opener_id, user__is_active=True)
            .first()
        )
        if membership is not None:
            return membership.user
    return workspace.personal_owner if workspace.personal_owner_id else None


def _subscription_welcome(*, row: Subscription, workspace, reference: str, now: datetime) -> None:
    """First activation: a key when the workspace has none, created in the name of the member
    who opened the checkout (shown once, through a link emailed to them only), and the 'plan
    active' email, queued after commit."""
    reveal_url = ""
    opener = None
    if api_key_active_count(workspace=workspace, now=now) == 0:
        opener = _checkout_opener(workspace=workspace, reference=reference)
        if opener is not None:
            api_key, plaintext = api_key_create(
                workspace=workspace, created_by=opener, name="Default key", now=now
            )
            reveal_url = api_key_reveal_link_create(api_key=api_key, plaintext=plaintext, now=now)
    from ..tasks import plan_active_email_task  # noqa: PLC0415 (billing.tasks imports the services: a task is queued lazily to avoid a cycle)

    subscription_id = row.pk
    reveal_user_id = opener.pk if reveal_url else None
    transaction.on_commit(
        lambda: plan_active_email_task.delay(
            subscription_id=subscription_id, reveal_url=reveal_url, reveal_user_id=reveal_user_id
        )
    )


CHARGILY_SUBSCRIPTION_PREFIX = "chargily:"


def subscription_period_activate(
    *, workspace, plan: Plan, reference: str, now: datetime | None = None
) -> Subscription:
    """A one-period plan paid through Chargily (no recurring billing there).

    A first payment is a new row, keyed by the checkout reference (a replay returns it); it
    replaces any other live subscription of the workspace. It ends at ``current_period_end`` by
    itself (``cancel_at_period_end``); paying the same plan again before then (renewal) extends
    that row by one period, so the new period starts where the current one ends.
    """
    now = now or timezone.now()
    sub_id = f"{CHARGILY_SUBSCRIPTION_PREFIX}{reference}"
    subscription_workspace_lock(workspace_id=workspace.pk)
    existing = Subscription.objects.filter(stripe_subscription_id=sub_id).first()
    if existing is not None:
        return existing
    current = lock_objects(
        Subscription.objects.filter(
            workspace_id=workspace.pk,
            plan=plan,
            gateway=Gateway.CHARGILY,
            status__in=Subscription.ENTITLED_STATUSES,
            current_period_end__gt=now,
        )
    )
    if current:
        # A renewal extends the live row by one period: one live subscription, one row.
        row = current[0]
        if row.checkout_reference == reference:
            return row
        row.current_period_end = _add_interval(row.current_period_end, plan.interval)
        row.checkout_reference = reference
        row.renewal_reminder_sent_at = None  # one reminder before the new end
        row.save(
            update_fields=[
                "current_period_end",
                "checkout_reference",
                "renewal_reminder_sent_at",
                "updated_at",
            ]
        )
        _subscription_cache_forget(workspace.pk)
        _subscription_audit(
            row=row,
            action="subscription.renewed",
            reference=reference,
            current_period_end=row.current_period_end.isoformat(),
        )
        logger.info("chargily period renewed", extra={"subscription_id": row.pk, "plan": plan.code})
        return row
    row = Subscription.objects.create(
        workspace=workspace,
        plan=plan,
        gateway=Gateway.CHARGILY,
        status=Subscription.Status.INCOMPLETE,  # live below, once no other one is
        stripe_subscription_id=sub_id,
        checkout_reference=reference,
        current_period_end=_add_interval(now, plan.interval),
        cancel_at_period_end=True,
        activated_at=now,
        stripe_event_at=now,
    )
    subscription_live_claim(row=row, now=now)  # the newest row: it always wins
    row.status = Subscription.Status.ACTIVE
    row.save(update_fields=["status", "updated_at"])
    _subscription_cache_forget(workspace.pk)
    _subscription_audit(row=row, action="subscription.activated", reference=reference)
    _subscription_welcome(row=row, workspace=workspace, reference=reference, now=now)
    logger.info("chargily period activated", extra={"subscription_id": row.pk, "plan": plan.code})
    return row


# --- Chargily periods: one paid period each, no recurring billing at Chargily ------------------


def _chargily_entitled():
    return Subscription.objects.filter(gateway=Gateway.CHARGILY, status__in=Subscription.ENTITLED_STATUSES)


def chargily_periods_expire(*, now: datetime | None = None) -> int:
    """End Chargily periods that are over (the plan already stopped applying at
    ``current_period_end``; this makes the row say so). Safe to run twice."""
    now = now or timezone.now()
    ended = 0
    for row_id, workspace_id in (
        _chargily_entitled().filter(current_period_end__lte=now).values_list("pk", "workspace_id")
    ):
        with transaction.atomic():
            if Subscription.objects.filter(pk=row_id, status__in=Subscription.ENTITLED_STATUSES).update(
                status=Subscription.Status.CANCELED, ended_at=F("current_period_end"), updated_at=now
            ):
                ended += 1
                _subscription_cache_forget(workspace_id)
                row = Subscription.objects.select_related("workspace", "plan").get(pk=row_id)
                _subscription_audit(row=row, action="subscription.ended")
    return ended


def chargily_renewal_reminders_send(*, now: datetime | None = None) -> int:
    """Email each Chargily plan ending within CHARGILY_RENEWAL_REMINDER_DAYS, once per period;
    skipped when the workspace already paid the next period."""
    now = now or timezone.now()
    horizon = now + timedelta(days=settings.CHARGILY_RENEWAL_REMINDER_DAYS)
    renewed = _chargily_entitled().filter(
        workspace_id=OuterRef("workspace_id"), current_period_end__gt=OuterRef("current_period_end")
    )
    due = (
        _chargily_entitled()
        .filter(
            current_period_end__gt=now, current_period_end__lte=horizon, renewal_reminder_sent_at__isnull=True
        )
        .exclude(Exists(renewed))
        .values_list("pk", flat=True)
    )
    return sum(chargily_renewal_reminder_send(subscription_id=pk, now=now) for pk in list(due))


def _email_values(row: Subscription, **extra) -> dict:
    """The placeholders of the plan emails, which each reader gets in their language (core.mail)."""
    pricing_url = f"{settings.SITE_URL}{reverse('billing:pricing')}"
    return {"plan": row.plan.name, "workspace": row.workspace.name, "pricing_url": pricing_url, **extra}


def chargily_renewal_reminder_send(*, subscription_id: int, now: datetime | None = None) -> bool:
    """One reminder per period, to the workspace's billing contacts: the marker (conditional
    UPDATE) and the email commit together, so a failed send is retried by the next run and a
    second run sends nothing."""
    now = now or timezone.now()
    with transaction.atomic():
        if not Subscription.objects.filter(pk=subscription_id, renewal_reminder_sent_at__isnull=True).update(
            renewal_reminder_sent_at=now
        ):
            return False
        row = Subscription.objects.select_related("workspace", "plan").get(pk=subscription_id)
        end = row.current_period_end
        values = _email_values(row, day=f"{end:%Y-%m-%d}", at=f"{end:%Y-%m-%d %H:%M}")
        mail_send_localized(
            recipients=workspace_billing_contacts(workspace=row.workspace),
            build=lambda: (
                gettext("Tollgate: your %(plan)s plan ends on %(day)s") % values,
                gettext(
                    "The %(plan)s plan of %(workspace)s, paid with Chargily Pay, ends on %(at)s UTC and does"
                    " not renew by itself.\n\n"
                    "Renew it (the new period starts when this one ends): %(pricing_url)s\n"
                )
                % values,
            ),
        )
    return True


def plan_active_email_send(
    *, subscription_id: int, reveal_url: str = "", reveal_user_id: int | None = None
) -> bool:
    """'Your plan is active' to the workspace's billing contacts. The one-time key link, when a
    key was created, goes to the member it was created for (``reveal_user_id``) and nobody else:
    a link shown to several people would show the key to the first who opens it."""
    row = Subscription.objects.select_related("workspace", "plan").filter(pk=subscription_id).first()
    if row is None:
        return False
    values = _email_values(row, url=f"{settings.SITE_URL}/dashboard/")

    def build(*, with_key: bool) -> tuple[str, str]:
        if row.workspace.personal:
            lines = [gettext("Your Tollgate %(plan)s plan is active.") % values, ""]
        else:
            lines = [gettext("The Tollgate %(plan)s plan of %(workspace)s is active.") % values, ""]
        if with_key:
            key_line = gettext(
                "We created an API key for you. Open this link within 24 hours to see it, once:"
            )
            lines += [key_line, reveal_url, ""]
        lines.append(gettext("Dashboard: %(url)s") % values)
        return gettext("Tollgate: your %(plan)s plan is active") % values, "\n".join(lines)

    revealed_to = None  # (email, language) of the member the key was created for
    if reveal_user_id is None and row.workspace.personal:  # a task queued before workspaces
        reveal_user_id = row.workspace.personal_owner_id
    if reveal_url and reveal_user_id is not None:
        revealed_to = (
            Membership.objects.filter(workspace=row.workspace, user_id=reveal_user_id)
            .values_list("user__email", "user__language")
            .first()
        )
    if revealed_to:
        mail_send_localized(recipients=[revealed_to], build=lambda: build(with_key=True))
    others = [c for c in workspace_billing_contacts(workspace=row.workspace) if c != revealed_to]
    mail_send_localized(recipients=others, build=lambda: build(with_key=False))
    return True


def subscription_payment_failed_email_send(*, subscription_id: int) -> bool:
    row = Subscription.objects.select_related("workspace", "plan").filter(pk=subscription_id).first()
    if row is None:
        return False
    recipients = workspace_billing_contacts(workspace=row.workspace)
    if not recipients:
        return False
    values = _email_values(row)
    mail_send_localized(
        recipients=recipients,
        build=lambda: (
            gettext("Tollgate: your payment failed"),
            gettext(
                "We could not charge the %(plan)s plan renewal of %(workspace)s. Stripe will retry; please"
                " update the payment method from %(pricing_url)s."
            )
            % values,
        ),
    )
    return True
