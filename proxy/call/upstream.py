"""The upstream step: each provider of the chain in turn, from its holds to its answer.

Per attempt: prepare (holds) → the provider (no database connection held while it works) →
settle. A provider failure (connection, timeout, 5xx, 429, garbage) releases the attempt and
tries the next provider; a provider's 4xx is relayed and charges nothing. The whole call runs
detached from its request (``detached.call_detached``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from django.conf import settings

from core.exceptions import ApiError
from core.metrics import upstream_call_timed

from .. import upstreams
from ..dbcall import db_call
from ..errors import chain_exhausted_error, upstream_client_error
from ..model_access import chat_model_check
from ..router import chain_without_cooling
from .detached import call_detached
from .gate import admission_leave
from .input import ChatCall
from .key_limits import model_not_allowed_error
from .prepare import (
    BudgetExhausted,
    NoProviderKey,
    PreparedCall,
    attempt_abandon,
    proxy_call_abandon,
    proxy_call_aprepare,
)
from .settle import CallRecord, chat_record, proxy_call_settle, settle, settle_email
from .stream import StreamRelay, stream_response, usage_tokens

logger = logging.getLogger("tollgate.proxy")


@dataclass
class Attempts:
    started: float = field(default_factory=time.monotonic)
    tried: list[str] = field(default_factory=list)
    failures: int = 0
    last_failure: upstreams.UpstreamFailure | None = None
    budget_fallback: bool = False

    @property
    def latency_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    @property
    def deadline(self) -> float:
        """Loop time by which the whole call (all providers, the whole stream) must end.

        A call can never outlive ``PROXY_CALL_DEADLINE_SECONDS``, so the stale-reservation
        sweeper (``STALE_RESERVATION_SECONDS``, always larger) never frees a live call's hold.
        """
        remaining = settings.PROXY_CALL_DEADLINE_SECONDS - (time.monotonic() - self.started)
        return asyncio.get_running_loop().time() + max(remaining, 0.0)


def _content_chars(body: dict) -> int:
    chars = 0
    for choice in body.get("choices") or []:
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            chars += len(message["content"])
    return chars


async def _prepare(**kwargs) -> PreparedCall:
    try:
        return await proxy_call_aprepare(**kwargs)
    finally:
        admission_leave()  # reserved or refused: the next call may be admitted


async def _fail(call: ChatCall, attempts: Attempts, error: ApiError, provider: str = "") -> ApiError:
    await db_call(
        proxy_call_settle,
        prepared=None,
        record=chat_record(
            call, attempts, status=error.status_code, provider=provider, error_code=error.code
        ),
    )
    return error


async def chat_call_run(call: ChatCall, *, complete=None):
    """Serve a chat call; returns a dict (JSON answer) or a StreamingHttpResponse. Raises ApiError.

    Runs detached from the request: a client disconnect cannot interrupt it between reserve
    and settle. ``complete(target=, payload=)`` is the provider call of a plain attempt
    (``upstreams.chat_complete`` when None; embeddings pass theirs).
    """
    await chat_model_check(call)  # an unknown model: 404 before anything is held
    if call.allowed_models and call.requested_model not in call.allowed_models:
        raise model_not_allowed_error(call.requested_model)  # 403, before anything is held
    return await call_detached(_chat_call_run(call, complete))


async def _chat_call_run(call: ChatCall, complete=None):
    attempts = Attempts()
    chain = chain_without_cooling(chain=call.chain, cooling=call.cooling)
    while chain:
        provider = chain.pop(0)
        if provider in attempts.tried:
            continue
        attempts.tried.append(provider)
        try:
            prepared = await _prepare(
                workspace=call.workspace,
                provider=provider,
                endpoint=call.endpoint,
                requested_model=call.requested_model,
                prompt_tokens=call.prompt_tokens,
                max_tokens=call.max_tokens * int(call.payload.get("n") or 1),
                meters={"requests": 1, "llm_tokens": call.reserve_tokens},
                plan=call.plan,
                credentials_version=call.credentials_version,
                api_key_id=call.api_key_id,
                key_limits=call.key_limits,
                member_id=call.member_id,
                member_limits=call.member_limits,
                user_id=call.user_id,
            )
        except NoProviderKey:
            continue
        except BudgetExhausted:
            attempts.budget_fallback = True
            fallback = call.fallback_provider
            chain = [fallback] if fallback and fallback not in attempts.tried else []
            continue
        except ApiError as exc:
            raise await _fail(call, attempts, exc, provider=provider) from None

        outcome = await _attempt(call, attempts, prepared, complete)
        if outcome is _STOP:
            break
        if outcome is not _NEXT:
            return outcome

    error = chain_exhausted_error(
        last_failure=attempts.last_failure, budget_fallback=attempts.budget_fallback
    )
    raise await _fail(call, attempts, error, provider=attempts.tried[-1] if attempts.tried else "")


_NEXT = object()  # this attempt failed over: try the next provider
_STOP = object()  # the call's deadline passed: no provider is tried any more


async def _attempt(call: ChatCall, attempts: Attempts, prepared: PreparedCall, complete=None):
    """One provider, from its holds to its answer. Every exit that does not hand the holds to a
    settle (an answer, a relay that settles when the stream ends) releases them: a provider
    failure, a timeout, a cancellation or any exception at all."""
    try:
        return await _attempt_run(call, attempts, prepared, complete)
    finally:
        if not prepared.closed and not prepared.relayed:
            await asyncio.shield(db_call(proxy_call_abandon, prepared=prepared))


async def _attempt_run(call: ChatCall, attempts: Attempts, prepared: PreparedCall, complete=None):
    provider = prepared.provider
    payload = {**call.payload, "model": prepared.upstream_model or call.requested_model}
    try:
        async with (
            upstream_call_timed(provider=provider, endpoint=call.endpoint),
            asyncio.timeout_at(attempts.deadline),
        ):
            if call.stream:
                options = payload.get("stream_options") or {}
                payload["stream_options"] = {**options, "include_usage": True}
                stream = await upstreams.chat_stream_open(target=prepared.target, payload=payload)
            else:
                complete = complete or upstreams.chat_complete
                body = await complete(target=prepared.target, payload=payload)
    except TimeoutError:
        attempts.failures += 1
        attempts.last_failure = upstreams.UpstreamFailure("timeout", "Call deadline reached.")
        await db_call(attempt_abandon, prepared=prepared, provider=provider)
        return _STOP
    except upstreams.UpstreamFailure as exc:
        logger.warning(
            "upstream failure", extra={"provider": provider, "kind": exc.kind, "status": exc.status}
        )
        attempts.failures += 1
        attempts.last_failure = exc
        await db_call(attempt_abandon, prepared=prepared, provider=provider)
        return _NEXT
    except upstreams.UpstreamClientError as exc:
        error = upstream_client_error(exc, provider=prepared.provider)  # redacted by upstreams
        await db_call(
            proxy_call_settle,
            prepared=prepared,
            record=chat_record(
                call, attempts, status=exc.status, provider=prepared.provider, error_code="provider_error"
            ),
        )
        raise error from None

    if call.stream:
        relay = StreamRelay(call, attempts, prepared, stream)
        if not await relay.first_chunk_wait() and relay.failed_early:
            # Nothing reached the client: no charge, no hold (the pump released them), and the
            # next provider may still serve the call.
            attempts.failures += 1
            deadline = relay.failed_early == "deadline_exceeded"
            attempts.last_failure = upstreams.UpstreamFailure(
                "timeout" if deadline else "protocol", "The stream failed before its first byte."
            )
            return _STOP if deadline else _NEXT
        return stream_response(relay, attempts, prepared)
    return await _complete(call, attempts, prepared, body)


async def _complete(call: ChatCall, attempts: Attempts, prepared: PreparedCall, body: dict) -> dict:
    usage = usage_tokens(body.get("usage"))
    estimated = usage is None
    if usage is None:  # the provider reported nothing: count, and say so
        # A call that reserves no output (embeddings) produces none.
        usage = (call.prompt_tokens, max(1, _content_chars(body) // 4) if call.max_tokens else 0)
    record = chat_record(
        call,
        attempts,
        status=200,
        provider=prepared.provider,
        prompt=usage[0],
        completion=usage[1],
        estimated=estimated,
    )
    event, block = await settle(
        prepared=prepared, record=record, workspace=call.workspace, quota_meter="llm_tokens"
    )
    body = dict(body)
    if call.service == "router":
        body.update(
            {
                "provider": prepared.provider,
                "fallback": event.is_fallback,
                "budget_fallback": event.is_budget_fallback,
                "cost": event.cost_usd,
            }
        )
    body["quota"] = block
    body["model"] = body.get("model") or prepared.upstream_model or call.requested_model
    return body


# --- One email through Instantly -------------------------------------------------------------

EMAIL_ENDPOINT = "/api/proxy/instantly/send"


@dataclass(frozen=True)
class EmailCall:
    """A validated email to send and the workspace it is sent for (the key's)."""

    workspace: object
    api_key_id: int | None
    plan: object
    credentials_version: bytes | None
    request_id: str
    to: str
    subject: str
    body: str
    # The key's own limits and its creator's monthly caps (an email counts its charge in
    # credits and money; it is not a request nor tokens).
    key_limits: tuple = ()
    member_id: int | None = None
    member_limits: tuple = ()
    user_id: int | None = None


def _email_record(call: EmailCall, started: float, status: int, error_code: str = "", emails: int = 0):
    return CallRecord(
        workspace_id=call.workspace.pk,
        api_key_id=call.api_key_id,
        service="instantly",
        endpoint=EMAIL_ENDPOINT,
        status_code=status,
        provider="instantly",
        emails=emails,
        latency_ms=int((time.monotonic() - started) * 1000),
        request_id=call.request_id,
        error_code=error_code,
    )


async def email_call_run(call: EmailCall) -> tuple[str, dict]:
    """Send one email (one ``emails`` unit when sent): (message id, quota block). Raises ApiError.

    Detached: a disconnect between reserve and settle must not leave the hold behind.
    """
    return await call_detached(_email_call_run(call))


async def _email_call_run(call: EmailCall) -> tuple[str, dict]:
    started = time.monotonic()
    try:
        prepared = await proxy_call_aprepare(
            workspace=call.workspace,
            provider="instantly",
            endpoint=EMAIL_ENDPOINT,
            requested_model="",
            prompt_tokens=0,
            max_tokens=0,
            meters={"emails": 1},
            plan=call.plan,
            credentials_version=call.credentials_version,
            api_key_id=call.api_key_id,
            key_limits=call.key_limits,
            member_id=call.member_id,
            member_limits=call.member_limits,
            user_id=call.user_id,
        )
    except (NoProviderKey, BudgetExhausted):
        error = ApiError("no_provider_available", "Email sending is not configured right now.")
        await db_call(proxy_call_settle, prepared=None, record=_email_record(call, started, 503, error.code))
        raise error from None
    except ApiError as exc:
        await db_call(
            proxy_call_settle,
            prepared=None,
            record=_email_record(call, started, exc.status_code, exc.code),
        )
        raise
    admission_leave()  # reserved: not held through the provider call
    try:
        message_id = await upstreams.email_send(
            target=prepared.target, to=call.to, subject=call.subject, body=call.body
        )
    except upstreams.UpstreamFailure as exc:
        if exc.is_timeout:
            error = ApiError("upstream_timeout", "Instantly timed out.")
        elif exc.is_rate_limited:
            error = chain_exhausted_error(last_failure=exc, budget_fallback=False)
        else:
            error = ApiError("upstream_error", "Instantly failed to send the email.")
        await db_call(
            proxy_call_settle,
            prepared=prepared,
            record=_email_record(call, started, error.status_code, error.code),
        )
        raise error from None
    except upstreams.UpstreamClientError as exc:
        await db_call(
            proxy_call_settle,
            prepared=prepared,
            record=_email_record(call, started, exc.status, "provider_error"),
        )
        raise upstream_client_error(exc, provider="instantly") from None
    else:
        _event, block = await db_call(
            settle_email,
            prepared=prepared,
            record=_email_record(call, started, 200, emails=1),
            workspace=call.workspace,
        )
        return message_id, block
    finally:  # any exit that did not settle (a bug, a cancellation) releases the hold
        if not prepared.closed:
            await asyncio.shield(db_call(proxy_call_abandon, prepared=prepared))
