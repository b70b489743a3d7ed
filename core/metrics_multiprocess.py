"""The process manager's side of multiprocess metrics (``gunicorn.conf.py`` calls these).

``PROMETHEUS_MULTIPROC_DIR`` must be set before any worker imports ``prometheus_client``, which
chooses its value store at import: so the master sets it while loading its configuration, and
this module never imports ``prometheus_client`` at module level (workers are forked from the
master and would inherit an in-process store). Each run starts from an empty directory: files
left by a previous run's workers would otherwise be summed into this run's numbers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

_prepared: str | None = None  # the directory this process prepared (a config reload keeps it)
_created: str | None = None  # the directory this process created (removed at exit)


def multiprocess_dir_prepare() -> str:
    """Give this run its metrics directory and export it to the workers; returns it.

    ``PROMETHEUS_MULTIPROC_DIR`` when set (created if missing; the ``*.db`` files in it, and only
    those, are deleted), else a new temporary directory. Once per process: gunicorn reloads its
    configuration on SIGHUP and the counts must go on.
    """
    global _prepared, _created
    if _prepared is not None:
        return _prepared
    path = os.environ.get(MULTIPROC_DIR_ENV, "")
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        for stale in Path(path).glob("*.db"):
            stale.unlink(missing_ok=True)
    else:
        path = _created = tempfile.mkdtemp(prefix="tollgate-metrics-")
    os.environ[MULTIPROC_DIR_ENV] = path
    _prepared = path
    return path


def multiprocess_worker_exited(*, pid: int) -> None:
    """A worker is gone: its live gauges stop counting (its counters and histograms stay summed)."""
    from prometheus_client import multiprocess  # noqa: PLC0415 (see the module docstring)

    multiprocess.mark_process_dead(pid)


def multiprocess_dir_remove() -> None:
    """At the master's exit: remove the temporary directory it created (never one it was given)."""
    global _prepared, _created
    if _created is not None:
        shutil.rmtree(_created, ignore_errors=True)
    _prepared = _created = None
