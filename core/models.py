from django.db import models


class BaseModel(models.Model):
    """Creation and update timestamps for every domain model. Holds no behaviour."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class WorkspaceDayMinutes(models.Model):
    """A per-workspace, per-UTC-day count of minutes in which a kind of refusal happened, written
    by ``core.services.counter_row_bump`` (one row per workspace and day; subclasses name the
    unique constraint and the (day, minutes) index the abuse list reads through)."""

    # A string reference: core sits below every app and imports none of their models.
    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    minutes = models.PositiveIntegerField(default=0)  # counted per key: two keys refused = 2

    class Meta:
        abstract = True

    def __str__(self):
        return f"{self.workspace_id} {self.day} {self.minutes}"


class ReconciliationDrift(models.Model):
    """An operational record, not a domain model: the nightly reconciliation found a cached
    number (a balance, a quota counter, a report's billing state) that disagrees with the rows
    it should be derived from. Drift is only recorded and shown to operators, never corrected
    automatically: a human decides which side is wrong and fixes it with a new ledger entry.

    At most one open (unresolved) record per ``source`` + ``subject``; a later run that sees
    the same drift updates ``last_seen_at`` and the figures instead of adding rows.
    """

    source = models.CharField(max_length=40)  # "credits.ledger", "billing.quota", "organizations.meter"
    subject = models.CharField(max_length=200)  # what drifted, e.g. "workspace:12" or "counter:7"
    expected = models.CharField(max_length=64)  # the value derived from the source rows
    actual = models.CharField(max_length=64)  # the cached / recorded value
    detail = models.JSONField(default=dict, blank=True)
    detected_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_note = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-detected_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "subject"],
                condition=models.Q(resolved_at__isnull=True),
                name="reconciliationdrift_one_open",
            ),
        ]

    def __str__(self):
        return f"{self.source} {self.subject}: expected {self.expected}, got {self.actual}"


class DeploymentIdentity(models.Model):
    """The identity of this database, part of every cache key (``core.cache_identity``).

    Cache entries are keyed by row ids; without this, a fresh or restored database on a Redis
    that served another one read that database's entries (other users' plans, key identities,
    counters). One row (``pk = 1``), created by a migration with the database, recreated with a
    new id if missing (``flush``), and replaced by ``manage.py cache_identity_rotate``.
    """

    instance_id = models.UUIDField()
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(pk=1), name="deploymentidentity_single_row")]

    def __str__(self):
        return str(self.instance_id)
