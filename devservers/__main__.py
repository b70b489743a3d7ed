"""``python -m devservers [--] [command …]``: run a command on the embedded servers.

Starts PostgreSQL unless ``DATABASE_URL`` is set and Valkey unless ``REDIS_URL`` is set, exports
their URLs to the command, and stops the servers (unless another command of this checkout still
uses them) when the command ends, however it ends. Without a command it keeps the servers up
until Ctrl-C, for psql or a shell elsewhere (the URLs are printed). Exits with the command's
status.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

import psutil

from . import LOCAL, postgres, valkey
from .state import Users, checkout_lock, say

SERVERS = (("DATABASE_URL", "postgres", postgres), ("REDIS_URL", "valkey", valkey))


def servers_up(env: dict) -> list:
    """Start (or join) each server the environment does not name; returns the ones joined."""
    joined = []
    with checkout_lock():
        for variable, name, server in SERVERS:
            if env.get(variable):
                say(f"{variable} is set: using it, no embedded {name}")
                continue
            users = Users(name)
            url, others = users.read()
            if not (others and url and server.is_running()):
                url = server.start()
            else:
                say(f"sharing the embedded {name} of a command already running: {url}")
            users.join(url)
            joined.append((name, server, users))
            env[variable] = url
    return joined


def servers_down(joined: list) -> None:
    with checkout_lock():
        for name, server, users in joined:
            if users.leave():
                server.stop()
                say(f"stopped the embedded {name}")


def _signal_tree(pid: int, signum: int) -> None:
    try:
        processes = [psutil.Process(pid)]
        processes += processes[0].children(recursive=True)
    except psutil.Error:
        return
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.send_signal(signum)


def _exit(signum, frame):
    raise SystemExit(128 + signum)


def run(command: list[str]) -> int:
    env = dict(os.environ)
    joined = []
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit)  # killed while starting: still stop what has started
    try:
        joined = servers_up(env)
        if not command:
            say("servers up; Ctrl-C stops them")
            for variable, _, _ in SERVERS:
                print(f"{variable}={env[variable]}", flush=True)
            waited = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
            signal.pthread_sigmask(signal.SIG_BLOCK, waited)
            signal.sigwait(waited)
            return 0
        child = subprocess.Popen(command, env=env)  # noqa: S603 - the command line of `make` or the user
        # Ctrl-C already reaches the command (same process group): ignored here so the command
        # shuts down at its pace. A SIGTERM or SIGHUP sent to this process alone is passed on to
        # the command and everything it started (`make` does not pass it on to uvicorn).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda signum, frame: _signal_tree(child.pid, signum))
        status = child.wait()
        return 128 - status if status < 0 else status
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # stopping is not interrupted half-way
        servers_down(joined)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        print(f"\nData: {LOCAL}")
        return 0
    return run(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
