"""The peer gateways the bench measures beside Tollgate, installed, configured and started:
LiteLLM's proxy at a pinned version in its own virtualenv (``bench/.work/``, git-ignored), or
``bench.stub_peer`` (a relay speaking the same protocol, for the tests). ``bench.peer`` runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import loadgen, processes
from .environment import step

LITELLM_VERSION = "1.108.7"  # the newest whose [proxy] extra resolves from the registry here
WORK_DIR = Path(__file__).resolve().parent / ".work"
MASTER_KEY = "sk-bench-peer-master-key"
CHAT_PATH = "/v1/chat/completions"
READY_PATH = "/health/liveliness"
PEERS = ("litellm", "stub")


@dataclass
class Peer:
    """A running peer gateway."""

    name: str
    version: str
    port: int
    managed: processes.Managed
    key: str = MASTER_KEY

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{CHAT_PATH}"

    def pids(self) -> list[int]:
        return self.managed.pids()

    def stop(self) -> None:
        self.managed.stop()


# --- LiteLLM: install, configure, start -------------------------------------------------------


def litellm_install(version: str = LITELLM_VERSION) -> Path:
    """The virtualenv of ``litellm[proxy]==version`` under ``bench/.work/`` (installed if missing)."""
    venv = WORK_DIR / f"litellm-{version}"
    stamp = venv / ".bench-installed"
    if stamp.exists():
        return venv
    step(f"installing litellm[proxy]=={version} into {venv} (once; a few minutes)")
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    result = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"litellm[proxy]=={version}",
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        noise = "is ignored: it is neither a file nor a directory"
        output = "\n".join(line for line in (result.stdout + result.stderr).splitlines() if noise not in line)
        raise RuntimeError(f"pip could not install litellm[proxy]=={version}:\n{output[-3000:]}")
    stamp.write_text(version + "\n")
    return venv


def litellm_config(*, upstream_port: int, master_key: str = MASTER_KEY) -> dict:
    """The proxy's config: every model → the fake upstream (OpenAI protocol), a master key, no
    database (no ``database_url``: no virtual keys, no spend logs, no budgets).

    The bench's model has a route of its own, as a deployment lists its models (a little cheaper
    per call than the wildcard route alone: 13 against 15–17 ms of CPU at c=1 here); the wildcard
    sends any other model to the same upstream.
    """
    upstream = {"api_base": f"http://127.0.0.1:{upstream_port}/v1", "api_key": "sk-bench-upstream"}
    model = loadgen.CHAT_BODY["model"]
    return {
        "model_list": [
            {"model_name": model, "litellm_params": {"model": f"openai/{model}", **upstream}},
            {"model_name": "*", "litellm_params": {"model": "openai/*", **upstream}},
        ],
        "general_settings": {"master_key": master_key},
        "litellm_settings": {"telemetry": False},
    }


def litellm_env(*, home: Path) -> dict:
    """A clean environment: none of Tollgate's variables (a ``DATABASE_URL`` would make LiteLLM
    keep books in it), nothing fetched from the internet at start-up, no telemetry, and the
    log level Tollgate's gunicorn runs with (no access log line per call)."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.update(
        HOME=str(home),
        LITELLM_LOCAL_MODEL_COST_MAP="True",  # the bundled cost map; no fetch at start-up
        LITELLM_TELEMETRY_DISABLED="True",
        LITELLM_LOG="ERROR",
        PYTHONUNBUFFERED="1",
    )
    return env


def litellm_start(
    *, port: int, upstream_port: int, log_dir: Path, workers: int, version: str = LITELLM_VERSION
) -> Peer:
    venv = litellm_install(version)
    home = WORK_DIR / "litellm-home"
    home.mkdir(parents=True, exist_ok=True)
    config = log_dir / "litellm-config.yaml"
    config.write_text(json.dumps(litellm_config(upstream_port=upstream_port), indent=2))  # JSON is YAML
    command = [
        str(venv / "bin" / "litellm"),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        str(workers),
        # uvicorn's supervisor restarts a worker that has not answered its ping within 5 s: a
        # LiteLLM worker takes longer than that to import on these two loaded cores, so it was
        # killed and restarted in a loop at start-up.
        "--timeout_worker_healthcheck",
        "60",
    ]
    managed = processes.Managed(
        "litellm", command, env=litellm_env(home=home), log_path=log_dir / "litellm.log", cwd=home
    )
    return _peer_ready(
        Peer(name="litellm", version=version, port=port, managed=managed), workers=workers, timeout=180
    )


def stub_start(*, port: int, upstream_port: int, log_dir: Path, workers: int) -> Peer:
    env = {
        **os.environ,
        "STUB_PEER_UPSTREAM_URL": f"http://127.0.0.1:{upstream_port}{CHAT_PATH}",
        "STUB_PEER_MASTER_KEY": MASTER_KEY,
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.stub_peer:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    managed = processes.Managed("stub-peer", command, env=env, log_path=log_dir / "stub-peer.log")
    return _peer_ready(Peer(name="stub", version="", port=port, managed=managed), workers=workers, timeout=60)


def peer_start(name: str, *, port: int, upstream_port: int, log_dir: Path, workers: int) -> Peer:
    if name == "litellm":
        return litellm_start(port=port, upstream_port=upstream_port, log_dir=log_dir, workers=workers)
    if name == "stub":
        return stub_start(port=port, upstream_port=upstream_port, log_dir=log_dir, workers=workers)
    raise ValueError(f"unknown peer {name!r} (one of {', '.join(PEERS)})")


def _peer_ready(peer: Peer, *, workers: int, timeout: float) -> Peer:
    """Wait for the readiness probe, every worker and a settled memory; then one real call."""
    base = f"http://127.0.0.1:{peer.port}"
    try:
        processes.wait_http(base + READY_PATH, timeout=timeout, proc=peer.managed.proc)
        # The first worker up answers the probe; the others may still be importing. Wait until
        # the process tree has its workers and its memory has stopped growing.
        deadline, last, stable_since = time.monotonic() + timeout, -1.0, time.monotonic()
        while time.monotonic() < deadline:
            pids = peer.pids()
            rss = processes.rss_mb(pids)
            if abs(rss - last) > max(2.0, last * 0.01):
                last, stable_since = rss, time.monotonic()
            elif len(pids) > workers and time.monotonic() - stable_since >= 3:
                break
            time.sleep(0.5)
        status, body = _probe(peer)
    except (RuntimeError, OSError) as exc:
        tail = peer.managed.log_tail()
        peer.stop()
        raise RuntimeError(f"the {peer.name} peer did not start: {exc}\n--- its log ---\n{tail}") from None
    if status != 200 or not (isinstance(body, dict) and body.get("usage")):
        tail = peer.managed.log_tail()
        peer.stop()
        raise RuntimeError(f"a probe call through the {peer.name} peer answered {status}: {body}\n{tail}")
    return peer


def _probe(peer: Peer):
    try:
        return processes.http_json(
            peer.url, data=loadgen.CHAT_BODY, headers={"Authorization": f"Bearer {peer.key}"}, timeout=30
        )
    except Exception as exc:  # urllib raises HTTPError for non-2xx; report what came back
        return getattr(exc, "code", -1), (exc.read() if hasattr(exc, "read") else str(exc))
