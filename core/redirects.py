"""Where a form may send the browser back to: a ``next`` on this site only (no open redirect)."""

from django.utils.http import url_has_allowed_host_and_scheme


def safe_next_url(request, target: str) -> str:
    """``target`` when it stays on this site (same host, and https when the request is), else ""."""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return ""
