"""The checks the nightly reconciliation runs, one per source of cached numbers.

Each check is read-only and returns :class:`DriftFinding` rows; ``core.services`` records them.
The checks live in their apps, which register them here (``reconciliation_check_register`` in
``AppConfig.ready``): ``core`` sits below every app and imports none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DriftFinding:
    source: str
    subject: str
    expected: str
    actual: str
    detail: dict = field(default_factory=dict)


# source -> check; each app registers its own in ``AppConfig.ready`` (core imports no app).
RECONCILIATION_CHECKS: dict[str, Callable[..., list[DriftFinding]]] = {}


def reconciliation_check_register(source: str, check: Callable[..., list[DriftFinding]]) -> None:
    """Add an app's read-only check (``check(now=…) -> list[DriftFinding]``) to the nightly run."""
    RECONCILIATION_CHECKS[source] = check
