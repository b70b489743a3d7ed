"""The serialize step for routes that speak another API than chat completions.

The call itself is a chat call (same gate, holds, providers and settle); only its answer is
reshaped here: a JSON answer by a function, a stream by wrapping the relay's body so that each
chat chunk is translated as it passes. The relay's body ends only once the call is on the books,
so the translated stream's closing events (``message_stop``, ``response.completed``) are never
sent before the call is billed.
"""

from __future__ import annotations

from ..translate.sse import SseDecoder, chat_chunks_parse


def stream_translate(response, translator):
    """Re-emit a chat SSE ``StreamingHttpResponse`` through ``translator`` (``feed``/``finish``)."""
    source = response.streaming_content

    async def body():
        decoder = SseDecoder()
        try:
            async for chunk in source:
                out = []
                for parsed in chat_chunks_parse(decoder, chunk):
                    out += translator.feed(parsed)
                if out:
                    yield b"".join(out)
            tail = translator.finish()
            if tail:
                yield b"".join(tail)
        finally:
            # Client gone: close the chat body too, as Django would have closed it.
            await source.aclose()

    response.streaming_content = body()
    return response
