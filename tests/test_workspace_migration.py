"""The move of every tenant's data from the user to their personal workspace.

Runs the real migrations on PostgreSQL: back to the schema before workspaces, rows written
with the historical models (users with a plan, a quota counter, credits and their ledger, keys,
provider keys and usage), then forward to the latest schema. Nothing may be lost: each user
owns a personal workspace holding exactly their rows, balances still equal their ledgers,
quota ``used`` still equals the usage recorded, and no key changes its hash.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [
    ("accounts", "0003_invalid_key_day"),
    ("billing", "0007_subscription_one_live"),
    ("credits", "0006_seed_embeddings_endpoint_cost"),
    ("proxy", "0004_usage_request_id_index"),
]

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _latest_schema_after():
    """Leave the schema as every other test expects it, workspace ids apart from user ids."""
    yield
    _migrate(_latest())
    with connection.cursor() as cursor:
        cursor.execute("ALTER SEQUENCE accounts_workspace_id_seq RESTART WITH 100001")


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def _latest():
    executor = MigrationExecutor(connection)
    return executor.loader.graph.leaf_nodes()


def _old_tenant(old, *, email: str, credits: list[int], used: int, tokens_per_call: int):
    """One pre-workspace customer, as the old schema stored them."""
    now = timezone.now()
    user = old.get_model("accounts", "User").objects.create(email=email, password="!")
    plan, _ = old.get_model("billing", "Plan").objects.get_or_create(
        code="business", defaults={"name": "Business", "price_minor": 9900}
    )
    old.get_model("billing", "Subscription").objects.create(
        user=user,
        plan=plan,
        status="active",
        stripe_customer_id=f"cus_{user.pk}",
        stripe_subscription_id=f"sub_{user.pk}",
        current_period_end=now + timedelta(days=20),
    )
    balance = 0
    ledger = old.get_model("credits", "LedgerEntry")
    for index, amount in enumerate(credits):
        balance += amount
        ledger.objects.create(
            user=user,
            kind="purchase" if amount > 0 else "consume",
            amount=amount,
            balance_after=balance,
            idempotency_key=f"{email}:{index}",
        )
    old.get_model("credits", "CreditAccount").objects.create(user=user, balance=balance)
    key = old.get_model("accounts", "ApiKey").objects.create(
        user=user, name="prod", prefix="sk_agentai_Mig", key_hash=f"{user.pk:064x}"
    )
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    old.get_model("billing", "UsageCounter").objects.create(
        user=user,
        meter="tokens",
        period="month",
        period_start=start,
        period_end=start + timedelta(days=40),
        used=used,
    )
    usage = old.get_model("proxy", "UsageEvent")
    for _ in range(used // tokens_per_call):
        usage.objects.create(
            user=user,
            api_key=key,
            service="deepseek",
            endpoint="chat",
            total_tokens=tokens_per_call,
            cost_usd=Decimal("0.000100"),
            status_code=200,
        )
    return user.pk, key.key_hash, balance


def test_every_customer_lands_in_a_personal_workspace_with_nothing_lost():
    latest = _latest()
    old = _migrate(BEFORE)
    customers = [
        _old_tenant(old, email="ana@example.com", credits=[500, -120, -30], used=3000, tokens_per_call=1000),
        _old_tenant(old, email="bo@example.com", credits=[100], used=0, tokens_per_call=1),
        _old_tenant(old, email="cy@example.com", credits=[1000, -1000], used=750, tokens_per_call=250),
    ]

    new = _migrate(latest)

    Workspace = new.get_model("accounts", "Workspace")
    Membership = new.get_model("accounts", "Membership")
    for user_id, key_hash, balance in customers:
        workspace = Workspace.objects.get(personal_owner_id=user_id)
        assert Membership.objects.get(workspace=workspace, user_id=user_id).role == "owner"
        account = new.get_model("credits", "CreditAccount").objects.get(workspace=workspace)
        ledger = new.get_model("credits", "LedgerEntry").objects.filter(workspace=workspace)
        assert account.balance == balance == sum(ledger.values_list("amount", flat=True))
        key = new.get_model("accounts", "ApiKey").objects.get(workspace=workspace)
        assert (key.key_hash, key.created_by_id) == (key_hash, user_id)
        counter = new.get_model("billing", "UsageCounter").objects.get(workspace=workspace)
        events = new.get_model("proxy", "UsageEvent").objects.filter(workspace=workspace)
        assert counter.used == sum(events.values_list("total_tokens", flat=True))
        assert new.get_model("billing", "Subscription").objects.get(workspace=workspace).status == "active"
    assert Workspace.objects.filter(personal_owner__isnull=False).count() == len(customers)


def test_a_workspace_made_after_the_migration_does_not_take_a_users_id():
    """New ids come from the sequence the migration moved past every user id."""
    old = _migrate(BEFORE)
    users = [old.get_model("accounts", "User").objects.create(email=f"u{i}@example.com") for i in range(3)]
    new = _migrate(_latest())
    Workspace = new.get_model("accounts", "Workspace")
    team = Workspace.objects.create(name="Team", slug="team")
    assert team.pk > max(user.pk for user in users)


def test_a_customer_who_signed_up_between_the_two_steps_keeps_their_credits():
    """Deployed in two steps, a user made after 0004 has a personal workspace with another id;
    their rows still reference the user and move onto that workspace, even when that id is
    another user's (the account's unique column must not collide on the way)."""
    between = [("accounts", "0004_workspaces"), *BEFORE[1:]]
    old = _migrate(between)
    User = old.get_model("accounts", "User")
    Workspace = old.get_model("accounts", "Workspace")
    accounts = old.get_model("credits", "CreditAccount")
    first, second = (User.objects.create(email=f"late{i}@example.com") for i in range(2))
    # The first one's workspace takes the second one's id; the second one's is new.
    Workspace.objects.create(id=second.pk, name="late0", slug="late0", personal_owner_id=first.pk)
    Workspace.objects.create(id=second.pk + 1000, name="late1", slug="late1", personal_owner_id=second.pk)
    accounts.objects.create(user_id=first.pk, balance=0)
    accounts.objects.create(user_id=second.pk, balance=0)
    for user, amount in ((first, 7), (second, 9)):
        old.get_model("credits", "LedgerEntry").objects.create(
            user_id=user.pk,
            kind="grant",
            amount=amount,
            balance_after=amount,
            idempotency_key=f"late:{user.pk}",
        )
        accounts.objects.filter(user_id=user.pk).update(balance=amount)

    new = _migrate(_latest())

    for user, workspace_id, amount in ((first, second.pk, 7), (second, second.pk + 1000, 9)):
        account = new.get_model("credits", "CreditAccount").objects.get(workspace_id=workspace_id)
        assert account.balance == amount
        assert (
            new.get_model("accounts", "Workspace").objects.get(pk=workspace_id).personal_owner_id == user.pk
        )
        ledger = new.get_model("credits", "LedgerEntry").objects.filter(workspace_id=workspace_id)
        assert sum(ledger.values_list("amount", flat=True)) == amount
