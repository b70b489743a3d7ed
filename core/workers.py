"""gunicorn's uvicorn worker with bounded request heads and bodies.

uvicorn's httptools protocol has no limit on a request's head (an unauthenticated client could
grow a worker by hundreds of MB), and gunicorn's ``limit_request_*`` do not apply to uvicorn
workers. Here, before anything reaches Django:

- a head (request line and headers) over ``HTTP_MAX_HEADER_BYTES`` answers 431 and closes,
  counted as bytes arrive;
- a body over ``HTTP_MAX_BODY_BYTES`` answers 413 from its ``Content-Length`` (a chunked body is
  cut at the limit), so Django's ASGI handler never spools any size to disk. The applications'
  own, lower limits answer their 413 themselves.

Production command: ``gunicorn config.asgi:application -k core.workers.BoundedUvicornWorker``.
See docs/hardening.md.
"""

from __future__ import annotations

import json
import logging

import httptools
from django.conf import settings
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.workers import UvicornWorker

logger = logging.getLogger("tollgate.core")


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; the answer is already chosen."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing heads and bodies over the configured sizes."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_head_bytes: int = settings.HTTP_MAX_HEADER_BYTES
        self.max_body_bytes: int = settings.HTTP_MAX_BODY_BYTES
        self._head_open = True  # reading a head (or waiting for the next request's)
        self._head_bytes = 0  # bytes received while the head was open (memory bound)
        self._head_parsed = 0  # request line + headers as parsed (the exact size)
        self._body_bytes = 0
        self._head_began_in_read = False
        self._refusal: tuple[int, str, str] | None = None
        self._current_cycle = None  # this request's cycle, once its application started

    def data_received(self, data: bytes) -> None:
        """uvicorn's, plus the size bounds (the refusal replaces its generic 400)."""
        self._unset_keepalive_if_required()
        self._head_began_in_read = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self._refusal is not None:
                self._refuse(*self._refusal)
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        if self._head_open and not self._head_began_in_read:
            # A head still incomplete after a whole read: count the read. (A head that began
            # in this read is counted exactly by the callbacks, and by this from the next read.)
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse(*self._head_refusal())

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_open = True
        self._head_began_in_read = True
        self._head_bytes = 0
        self._head_parsed = 0
        self._body_bytes = 0
        self._current_cycle = None

    def on_url(self, url: bytes) -> None:
        self._head_parsed += len(url)
        if self._head_parsed > self.max_head_bytes:
            self._stop(self._head_refusal())
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """uvicorn's (inlined: it runs for every header of every request), plus the bounds."""
        self._head_parsed += len(name) + len(value) + 4  # ": " and CRLF
        if self._head_parsed > self.max_head_bytes:
            self._stop(self._head_refusal())
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        elif name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
            self._stop(self._body_refusal())  # before the application starts or the body is read
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._head_open = False
        super().on_headers_complete()
        self._current_cycle = self.cycle

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.max_body_bytes:  # chunked: no Content-Length to check first
            self._stop(self._body_refusal())
        super().on_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_open = True  # the next request's head; this read's bytes were this one's body
        self._head_began_in_read = True
        self._head_bytes = 0

    def _head_refusal(self) -> tuple[int, str, str]:
        return (431, "headers_too_large", f"Request headers are larger than {self.max_head_bytes} bytes.")

    def _body_refusal(self) -> tuple[int, str, str]:
        return (413, "payload_too_large", f"Request body is larger than {self.max_body_bytes} bytes.")

    def _stop(self, refusal: tuple[int, str, str]):
        self._refusal = refusal
        raise _Refused

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer the JSON error (unless the application already answered) and close."""
        from core.exceptions import error_body  # noqa: PLC0415 (DRF loads in a worker that refuses, not in the gunicorn master)

        logger.warning("request refused: %s", code, extra={"limit_status": status})
        if self.transport.is_closing():
            return
        current = self._current_cycle
        if current is not None and not current.response_complete:
            current.disconnected = True  # the running application sees the client leave
            current.message_event.set()
        # A pipelined request's previous answer may still be going out: nothing may interleave.
        previous_busy = (
            self.cycle is not None and self.cycle is not current and not self.cycle.response_complete
        )
        if not previous_busy and (current is None or not current.response_started):
            body = json.dumps(error_body(code, message)).encode()
            content = [STATUS_LINE[status]]
            for name, value in self.server_state.default_headers:
                content.extend([name, b": ", value, b"\r\n"])
            content.extend(
                [
                    b"content-type: application/json\r\n",
                    b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                    b"connection: close\r\n",
                    b"\r\n",
                    body,
                ]
            )
            self.transport.write(b"".join(content))
        self.transport.close()


class BoundedUvicornWorker(UvicornWorker):
    """The production worker class: uvicorn's, on ``BoundedHttpToolsProtocol``."""

    CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, "http": "core.workers:BoundedHttpToolsProtocol"}
