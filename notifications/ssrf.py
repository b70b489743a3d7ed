"""Where a webhook may be sent: http(s) to a public address only (SSRF guard).

Checked when an endpoint is created or changed AND at every delivery, against the addresses the
host resolves to then; the delivery connects to the very address that was checked (the name
cannot resolve elsewhere between the check and the connection). ``WEBHOOK_ALLOW_PRIVATE_TARGETS``
lifts the address rule (local development, tests with a local receiver); the scheme rule stays.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from core.exceptions import ApiError

ALLOWED_SCHEMES = ("http", "https")


class UnsafeTarget(Exception):
    """The URL may not receive webhooks; the message says why (no secret in it)."""


@dataclass(frozen=True)
class Target:
    """A checked URL: its host, port and the address to connect to."""

    scheme: str
    host: str
    port: int
    address: str


def _address_refused(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def target_resolve(url: str) -> Target:
    """The URL's target after the checks; raises ``UnsafeTarget``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UnsafeTarget(f"invalid URL ({error})") from None
    if parts.scheme not in ALLOWED_SCHEMES:
        raise UnsafeTarget("only http and https URLs can receive webhooks")
    host = parts.hostname
    if not host:
        raise UnsafeTarget("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeTarget("credentials in the URL are not allowed")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UnsafeTarget(f"the host {host} does not resolve") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise UnsafeTarget(f"the host {host} does not resolve")
    if not settings.WEBHOOK_ALLOW_PRIVATE_TARGETS:
        refused = [address for address in addresses if _address_refused(address)]
        if refused:
            raise UnsafeTarget(
                f"the host {host} resolves to a private, loopback, link-local or reserved address"
            )
    return Target(scheme=parts.scheme, host=host, port=port, address=addresses[0])


def webhook_url_validate(url: str) -> None:
    """The API's flavour: 400 ``invalid_request`` on ``url``."""
    try:
        target_resolve(url)
    except UnsafeTarget as error:
        raise ApiError(
            "invalid_request", f"This URL cannot receive webhooks: {error}.", param="url"
        ) from None
