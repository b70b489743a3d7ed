"""The call path's Redis scripts, run by SHA (and loaded again when the server forgot them)."""

from __future__ import annotations

from redis.exceptions import NoScriptError

from core.fastio import redis_client

_scripts: dict[int, dict] = {}


def script_run(name: str, lua: str, *, keys: list, args: list):
    """EVALSHA ``lua`` on this loop's client. Not redis-py's ``AsyncScript``: its Protocol check
    cost ~1 % of a call's CPU."""
    client = redis_client()
    scripts = _scripts.setdefault(id(client), {})
    script = scripts.get(name)
    if script is None:
        script = scripts[name] = client.register_script(lua)
    return _evalsha(client, script, len(keys), *keys, *args)


async def _evalsha(client, script, numkeys: int, *keys_and_args):
    try:
        return await client.evalsha(script.sha, numkeys, *keys_and_args)
    except NoScriptError:  # a restarted or different server: load it and run it again
        script.sha = await client.script_load(script.script)
        return await client.evalsha(script.sha, numkeys, *keys_and_args)
