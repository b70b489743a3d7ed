"""``python -m bench --floor``: the bench's load against relays on Tollgate's serving stack with
no key and no billing (``bench.floor``, ``bench.floor_django``)."""

from __future__ import annotations

from types import SimpleNamespace

from . import loadgen, processes
from .environment import database_ensure, step
from .phases import DIRECT_PATH, Bench
from .processes import WORKER_CLASS

FLOORS = {
    # kind: (ASGI application, settings module, readiness path)
    "bare": ("bench.floor:application", "config.settings", "/"),
    "django": ("config.asgi:application", "bench.floor_settings", "/health"),
}


class FloorBench(Bench):
    """The same load against a relay on Tollgate's serving stack, with no key and no billing.

    ``bare``: ``bench.floor``, a plain ASGI relay, the least any Tollgate on this stack (gunicorn
    + uvicorn workers, aiohttp, these two cores) can add. ``django``: ``bench.floor_django``,
    Tollgate's Django and DRF around the same relay. Against Tollgate's own figures they tell
    the stack's share of a target from the framework's and from billing's (docs/how-a-call-flows.md).
    """

    def __init__(self, args, *, kind: str):
        super().__init__(args)
        self.kind = kind
        self.env["FLOOR_UPSTREAM_URL"] = f"http://127.0.0.1:{self.upstream_port}{DIRECT_PATH}"
        self.env["DJANGO_SETTINGS_MODULE"] = FLOORS[kind][1]
        self.tenant = SimpleNamespace(api_key="sk_agentai_floor", workspace_id=None, user_id=None)
        self.measure_routes = False  # the relays serve chat completions only

    def prepare(self) -> None:
        step(f"floor ({self.kind}): a relay with no key, no limits and no books")
        if self.kind == "django":
            database_ensure(self.args.database_url)  # Django's /health asks the database

    def start(self) -> None:
        application, _settings, ready_path = FLOORS[self.kind]
        step("fake upstream")
        self.upstream = processes.fake_upstream_start(
            port=self.upstream_port, env=self.env, log_dir=self.log_dir
        )
        step(f"floor relay {application}: gunicorn -k {WORKER_CLASS} -w {self.args.workers}")
        self.tollgate = processes.tollgate_start(
            port=self.tollgate_port,
            env=self.env,
            log_dir=self.log_dir,
            workers=self.args.workers,
            application=application,
            ready_path=ready_path,
        )

    def proxy_probe(self) -> None:
        status, _ = processes.http_json(self.proxy_url, data=loadgen.CHAT_BODY, timeout=15)
        if status != 200:
            raise RuntimeError(f"a probe call through the {self.kind} floor answered {status}")

    def db_transactions(self) -> int:
        return 0

    def check(self, label: str) -> dict:
        return {"after": label, "skipped": "a floor relay keeps no books"}


def floor_run(args) -> dict:
    """Each floor in turn, the phases Tollgate's targets are read on (instant, streams)."""
    floor = {}
    for kind in FLOORS:
        bench = FloorBench(args, kind=kind)
        try:
            bench.prepare()
            bench.start()
            bench.proxy_probe()
            floor[kind] = {}
            if not args.skip_instant:
                step(f"floor ({kind}), instant upstream: interleaved direct/relay runs")
                floor[kind]["instant"] = bench.phase_instant()
            if not args.skip_streams:
                step(f"floor ({kind}), streams")
                floor[kind]["streams"] = bench.phase_streams()
        finally:
            bench.stop()
            print(f"logs ({kind}): {bench.log_dir}", flush=True)
    return floor
