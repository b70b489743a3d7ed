"""gunicorn's configuration, read from the working directory by every ``gunicorn`` started here
(README, Dockerfile, docker-compose.yml, the bench, the tests' servers); command-line options
still apply on top. It prepares multiprocess metrics (docs/hardening.md, "Metrics"): workers are
separate processes, so each writes its histograms to a file in ``PROMETHEUS_MULTIPROC_DIR`` and
``/metrics`` sums them.
"""

from pathlib import Path

import environ

from core.metrics_multiprocess import (
    multiprocess_dir_prepare,
    multiprocess_dir_remove,
    multiprocess_worker_exited,
)

# The master reads no Django settings: take .env as config/settings.py does (the environment
# wins), so PROMETHEUS_MULTIPROC_DIR may be set there too.
environ.Env.read_env(Path(__file__).resolve().parent / ".env", overwrite=False)
# Now, while the configuration loads: before any worker starts, and before the application is
# imported in the master (``--preload``).
multiprocess_dir_prepare()


def child_exit(server, worker):
    multiprocess_worker_exited(pid=worker.pid)


def on_exit(server):
    multiprocess_dir_remove()
