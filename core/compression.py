"""gzip for HTML pages only: never for the APIs' JSON, the proxy or streams.

``PageGZipMiddleware`` sits after ``ApiFastPathMiddleware`` (so the proxy's fast path never
reaches it) and after the static files middleware (servestatic serves its own precompressed
files). It also leaves alone what would still pass through it:

- streaming responses (server-sent events, file downloads): Django's gzip buffers a sync stream
  inside the compressor and would hold SSE chunks back;
- anything under ``API_FAST_PATH_PREFIXES`` (the proxy when a route falls back to the full
  stack): its clients measure latency, and its JSON is small;
- ``Cache-Control: no-store`` responses (log-in, password and refusal pages);
- anything that is not HTML: the APIs' JSON carries secrets shown once (a new key) beside the
  caller's own input, the textbook BREACH setting, and its answers are small.

BREACH: an attacker who can inject text into a compressed page and watch its size over many
requests can guess a secret that appears in every one of those pages. Here a new API key is
shown once (the flash is consumed by the one page that shows it), so no two responses carry the
same key; CSRF tokens are masked afresh in each response; Django's gzip pads each body with
random bytes ("Heal the BREACH"). Pages are compressed; the no-store pages above are not.
"""

from __future__ import annotations

from django.conf import settings
from django.middleware.gzip import GZipMiddleware


class PageGZipMiddleware(GZipMiddleware):
    def process_response(self, request, response):
        if response.streaming or "no-store" in response.get("Cache-Control", ""):
            return response
        if not response.get("Content-Type", "").startswith("text/html"):
            return response
        prefixes = tuple(settings.API_FAST_PATH_PREFIXES)
        if prefixes and request.path_info.startswith(prefixes):
            return response
        return super().process_response(request, response)
