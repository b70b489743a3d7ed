"""The API-surface routes the instant phase measures beside chat completions: embeddings, the
Responses API and Anthropic Messages — each the body a client sends, how it authenticates, and
the upstream call a proxy adding nothing would make (the direct runs it is compared with).

Responses and Messages are bridged from chat in Tollgate, so their direct runs post the chat
body they translate to (``loadgen.CHAT_BODY``: the same system line, question and token cap) to
the fake upstream's chat route; embeddings go to its ``/embeddings``. Each route's usage events
carry its own endpoint, which the accounting check reads route by route.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .loadgen import CHAT_BODY

# Concurrencies at which the routes are measured (``--quick`` measures them at its one level).
ROUTE_LEVELS = (1, 64)
ANTHROPIC_VERSION = "2023-06-01"

_SYSTEM = CHAT_BODY["messages"][0]["content"]
_QUESTION = CHAT_BODY["messages"][1]["content"]


@dataclass(frozen=True)
class Route:
    name: str
    path: str  # Tollgate's route, also the usage events' endpoint
    body: dict
    direct_path: str  # the fake upstream's route Tollgate calls for it
    direct_body: dict
    key_header: str = "authorization"  # "authorization" (Bearer) or "x-api-key"
    extra_headers: dict = field(default_factory=dict)

    def auth(self, key: str) -> tuple[str, dict[str, str]]:
        """(bearer key, extra headers) for ``loadgen``: the key where this route's SDK puts it."""
        if self.key_header == "authorization":
            return key, dict(self.extra_headers)
        return "", {self.key_header: key, **self.extra_headers}

    def headers(self, key: str) -> dict[str, str]:
        bearer, extra = self.auth(key)
        return {**({"Authorization": f"Bearer {bearer}"} if bearer else {}), **extra}


EMBEDDINGS_BODY = {
    "model": "text-embedding-3-small",  # an exact route to openai (proxy.catalog), at the fake
    "input": [_QUESTION, "Toll gates were often kept by a family living beside the road."],
}

ROUTES = (
    Route(
        name="embeddings",
        path="/api/proxy/v1/embeddings",
        body=EMBEDDINGS_BODY,
        direct_path="/v1/embeddings",
        direct_body=EMBEDDINGS_BODY,
    ),
    Route(
        name="responses",
        path="/api/proxy/v1/responses",
        body={
            "model": CHAT_BODY["model"],
            "instructions": _SYSTEM,
            "input": _QUESTION,
            "max_output_tokens": CHAT_BODY["max_tokens"],
        },
        direct_path="/v1/chat/completions",
        direct_body=CHAT_BODY,
    ),
    Route(
        name="messages",
        path="/api/proxy/v1/messages",
        body={
            "model": "claude-sonnet-4",  # routed by the bench plan's tier mix, like chat
            "system": _SYSTEM,
            "messages": [{"role": "user", "content": _QUESTION}],
            "max_tokens": CHAT_BODY["max_tokens"],
        },
        direct_path="/v1/chat/completions",
        direct_body=CHAT_BODY,
        key_header="x-api-key",
        extra_headers={"anthropic-version": ANTHROPIC_VERSION},
    ),
)
