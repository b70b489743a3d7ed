"""Bookkeeping shared by the servers: one lock per checkout, the commands using each server,
free ports and finding a server process by its data directory."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from . import LOCAL


def say(message: str) -> None:
    print(f"devservers: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def checkout_lock() -> Iterator[None]:
    """Held while servers of this checkout start or stop (never while a command runs)."""
    LOCAL.mkdir(mode=0o755, exist_ok=True)
    with open(LOCAL / "devservers.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def free_port() -> int:
    """A TCP port nobody listens on now (the kernel's choice, never 5432 or 6379 in use)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _me() -> list:
    return [os.getpid(), psutil.Process().create_time()]


def _alive(user: list) -> bool:
    """A user is a (pid, start time) pair, so a reused pid is not taken for a live command."""
    pid, created = user
    try:
        process = psutil.Process(pid)
        return abs(process.create_time() - created) < 0.01 and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class Users:
    """``.local/<server>.json``: the server's URL and the live commands using it."""

    def __init__(self, name: str):
        self.path = LOCAL / f"{name}.json"

    def read(self) -> tuple[str | None, list]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None, []
        return data.get("url"), [user for user in data.get("users", []) if _alive(user)]

    def write(self, url: str | None, users: list) -> None:
        if not users:
            self.path.unlink(missing_ok=True)
            return
        self.path.write_text(json.dumps({"url": url, "users": users}))

    def join(self, url: str) -> None:
        _, users = self.read()
        self.write(url, [*users, _me()])

    def leave(self) -> bool:
        """Drop this process; True when nobody else uses the server (stop it)."""
        url, users = self.read()
        me = _me()
        users = [user for user in users if user != me]
        self.write(url, users)
        return not users


def processes_in(directory: Path, name: str) -> list[psutil.Process]:
    """Processes called ``name`` whose working directory is ``directory``: PostgreSQL and Valkey
    both change into their data directory, so this finds a server of this checkout even when its
    pid file is gone."""
    found = []
    for process in psutil.process_iter(["name"]):
        if process.info["name"] != name:
            continue
        with contextlib.suppress(psutil.Error):
            if Path(process.cwd()) == directory:
                found.append(process)
    return found


def _gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE  # exited; its new parent reaps it
    except psutil.NoSuchProcess:
        return True


def stop_process(process: psutil.Process, *, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        process.send_signal(sig)
    deadline = time.monotonic() + timeout
    while not _gone(process):
        if time.monotonic() > deadline:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
            deadline = time.monotonic() + 5
        time.sleep(0.02)
