"""The address a request comes from, for per-client limits (failed API-key authentications).

``REMOTE_ADDR`` is the peer that opened the connection. Behind reverse proxies that peer is the
nearest proxy and the client is named in ``X-Forwarded-For``, but any client can send that
header, so it is trusted only as far as ``NUM_PROXIES`` says (DRF's convention). Each trusted
proxy appends the address it received the request from, so with N of them the N-th entry from
the right was written by the outermost one and is the client's; entries further left are the
client's own claims. ``NUM_PROXIES=0`` (the default) never reads the header. A server that
already rewrites ``REMOTE_ADDR`` itself (uvicorn/gunicorn ``--forwarded-allow-ips``) needs 0.

IPv6 clients are grouped by /64: a single host usually holds a whole /64 and can walk through
it freely, so a limit per full IPv6 address would limit nothing (django-ratelimit masks the
same way).
"""

from __future__ import annotations

import ipaddress

from django.conf import settings

IPV6_PREFIX = 64
UNPARSABLE_MAX_LENGTH = 64  # a non-IP REMOTE_ADDR (unix socket, test client) is kept, bounded


def client_address_get(request) -> str:
    """The client's address (an IPv6 client as its /64), never taken from a header by default."""
    meta = request.META
    remote = meta.get("REMOTE_ADDR") or ""
    num_proxies = settings.NUM_PROXIES
    if num_proxies > 0:
        forwarded = [part.strip() for part in meta.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        forwarded = [part for part in forwarded if part]
        if forwarded:
            claimed = _normalized(forwarded[-min(num_proxies, len(forwarded))])
            if claimed is not None:
                return claimed
    normalized = _normalized(remote)
    return normalized if normalized is not None else (remote[:UNPARSABLE_MAX_LENGTH] or "unknown")


def _normalized(value: str) -> str | None:
    if value.startswith("["):  # "[2001:db8::1]:443": some proxies add the port
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:  # "203.0.113.7:443"
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)
