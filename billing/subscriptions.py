"""One live subscription per customer (a workspace).

A customer can open several plan checkouts while on the free plan (two tabs, or Stripe and
Chargily) and pay them all. Checkout creation already refuses a paid plan while another is live;
for checkouts opened before, the rule is: **the payment processed last replaces the others**.
The replaced subscription is ended in our mirror at once (in the same transaction that makes the
new one live, so the database constraint ``subscription_one_live_per_workspace`` always holds) and, for
Stripe, canceled there after commit (``billing.gateways.stripe``) — immediately, with proration,
so the unused time comes back as a credit on that Stripe customer's balance. The cancel is
retried by a task and swept by beat until Stripe confirms it, so a replaced subscription never
keeps billing.

A subscription that comes back to a live status (an unpaid one paid late) while a newer one is
live is the one replaced: the newest row wins.

Every change that can make a row live takes the workspace's advisory lock first, so two events of
one customer (two checkouts paid at once, by two members) are applied one after the other.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from core.locks import lock_objects

from .models import Gateway, Subscription
from .selectors import workspace_plan_cache_key

logger = logging.getLogger("tollgate.billing")

LIVE_STATUSES = Subscription.ENTITLED_STATUSES  # as the partial unique index
_LOCK_CLASS = 0x5342  # advisory lock namespace: "subscriptions of one workspace"


def subscription_workspace_lock(*, workspace_id: int) -> None:
    """Serialise changes to one workspace's subscriptions until the transaction ends.

    Take it before any subscription row lock, so the order is always workspace, then rows.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_CLASS, int(workspace_id) & 0x7FFFFFFF])


def _cache_forget(workspace_id: int) -> None:
    transaction.on_commit(lambda: cache.delete(workspace_plan_cache_key(workspace_id)))


def subscription_live_claim(*, row: Subscription, now: datetime | None = None) -> bool:
    """``row`` (saved, not live yet) is about to become live: end every other live subscription
    of its workspace and return True — or, when one of them is newer, end ``row`` instead and return
    False (the caller must then leave it ended). Call under ``subscription_workspace_lock``."""
    now = now or timezone.now()
    others = lock_objects(
        Subscription.objects.filter(workspace_id=row.workspace_id, status__in=LIVE_STATUSES).exclude(
            pk=row.pk
        )
    )
    newer = [other for other in others if (other.created_at, other.pk) > (row.created_at, row.pk)]
    if newer:
        subscription_retire(row=row, replaced_by=max(newer, key=lambda o: (o.created_at, o.pk)), now=now)
        return False
    for other in others:
        subscription_retire(row=other, replaced_by=row, now=now)
    return True


def subscription_retire(*, row: Subscription, replaced_by: Subscription, now: datetime) -> None:
    """End ``row`` now because ``replaced_by`` took its place; a Stripe subscription is canceled
    at Stripe after commit (``billing.gateways.stripe.subscription_stripe_cancel``)."""
    row.status = Subscription.Status.CANCELED
    row.ended_at = now
    row.cancel_at_period_end = False
    row.replaced_by = replaced_by
    row.replaced_at = now
    row.save(
        update_fields=[
            "status",
            "ended_at",
            "cancel_at_period_end",
            "replaced_by",
            "replaced_at",
            "updated_at",
        ]
    )
    _cache_forget(row.workspace_id)
    logger.warning(
        "subscription replaced by a newer paid checkout",
        extra={"subscription_id": row.pk, "replaced_by": replaced_by.pk, "gateway": row.gateway},
    )
    if row.gateway == Gateway.STRIPE:
        from .tasks import subscription_stripe_cancel_task  # noqa: PLC0415 (billing.tasks imports the services: a task is queued lazily to avoid a cycle)

        subscription_id = row.pk
        transaction.on_commit(lambda: subscription_stripe_cancel_task.delay(subscription_id=subscription_id))
