"""The beat schedule: every app's periodic task reaches Celery, with an expiry, in this process
and in a fresh ``celery beat`` one."""

import json
import os
import subprocess
import sys
from pathlib import Path

from config.celery import app
from core.beat import beat_schedule

# Every periodic task of the product (name -> task); one an app stops registering fails here.
EXPECTED = {
    "accounts-key-reveals-purge": "accounts.key_reveals_purge",
    "notifications-deliveries-sweep": "notifications.deliveries_sweep",
    "quota-period-rollover": "billing.tasks.quota_period_rollover",
    "quota-reservations-release-stale": "billing.tasks.quota_reservations_release_stale",
    "subscriptions-replaced-cancel-pending": "billing.tasks.subscriptions_replaced_cancel_pending",
    "chargily-periods-expire": "billing.tasks.chargily_periods_expire",
    "chargily-renewal-reminders": "billing.tasks.chargily_renewal_reminders",
    "core-reconciliation-run": "core.reconciliation_run",
    "credits-ledger-reconcile": "credits.ledger_reconcile",
    "credits-holds-expire": "credits.holds_expire",
    "credits-lots-expire": "credits.lots_expire",
    "dashboards-operator-alerts": "dashboards.operator_alerts_check",
    "organizations-meter-events-retry": "organizations.usage_reports_retry_due",
    "budget-holds-sweep": "proxy.tasks.budget_holds_sweep",
}


def test_the_celery_app_schedules_every_registered_task_with_an_expiry():
    schedule = app.conf.beat_schedule
    assert {name: entry["task"] for name, entry in schedule.items()} == EXPECTED
    assert schedule == beat_schedule()
    for name, entry in schedule.items():
        assert entry["options"]["expires"] > 0, name


def test_celery_beat_started_afresh_sees_every_entry_with_its_expiry():
    """What ``celery -A config beat`` does: import the app, run the loader's worker init (Django's
    setup, hence every ``ready()``, and the tasks' modules), then build its scheduler. Each entry
    names a task the same init registers, so a worker knows it."""
    probe = (
        "import json; from celery.beat import Scheduler; from config.celery import app;"
        "app.loader.init_worker(); app.finalize(); scheduler = Scheduler(app, lazy=False);"
        "print(json.dumps({name: [entry.task, entry.options.get('expires'), entry.task in app.tasks]"
        " for name, entry in scheduler.schedule.items() if not name.startswith('celery.')}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert {name: task for name, (task, _, _) in seen.items()} == EXPECTED
    assert all(expires and expires > 0 for _, expires, _ in seen.values()), seen
    assert all(known for _, _, known in seen.values()), seen
