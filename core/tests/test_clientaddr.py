"""The client address for per-client limits: X-Forwarded-For only as far as NUM_PROXIES trusts it."""

import pytest
from django.test import RequestFactory

from core.clientaddr import client_address_get


def _address(remote: str, forwarded: str | None = None) -> str:
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return client_address_get(RequestFactory().get("/", **extra))


def test_the_header_is_ignored_by_default(settings):
    settings.NUM_PROXIES = 0

    assert _address("203.0.113.7", "198.51.100.1") == "203.0.113.7"


@pytest.mark.parametrize(
    ("num_proxies", "forwarded", "expected"),
    [
        (1, "198.51.100.1", "198.51.100.1"),
        (1, "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # the client's own claim is on the left
        (2, "6.6.6.6, 198.51.100.1, 10.0.0.1", "198.51.100.1"),
        (2, "198.51.100.1", "198.51.100.1"),  # a shorter chain: the outermost entry we have
        (1, "198.51.100.1:443", "198.51.100.1"),
        (1, "[2001:db8::1]:443", "2001:db8::/64"),
        (1, "not-an-address", "10.0.0.2"),  # garbage falls back to the peer
        (1, "", "10.0.0.2"),
    ],
)
def test_trusted_proxies_name_the_client(settings, num_proxies, forwarded, expected):
    settings.NUM_PROXIES = num_proxies

    assert _address("10.0.0.2", forwarded) == expected


def test_ipv6_clients_are_grouped_by_their_64(settings):
    settings.NUM_PROXIES = 0

    assert _address("2001:db8:1:2:aaaa::1") == _address("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert _address("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert _address("::ffff:203.0.113.7") == "203.0.113.7"
