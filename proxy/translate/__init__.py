"""Translations between the API shapes clients speak and the one shape the call path runs on.

Every call runs as an OpenAI chat completion (or an embeddings call) through the same steps —
gate, prepare, upstream, settle. The Anthropic Messages and OpenAI Responses routes translate
their request into a chat payload at the door and the chat answer (or its SSE chunks) back on
the way out; the Anthropic adapter translates the other way for Anthropic's native API. These
modules are pure functions over dicts: no I/O, no Django.
"""


class TranslationError(ValueError):
    """The request uses something this bridge cannot carry; ``param`` names it (a 400)."""

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
