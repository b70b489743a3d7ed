"""Faults that are not the client's bug map to documented statuses, never a 500."""

import pytest
from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError, InterfaceError, OperationalError
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.exceptions import api_exception_handler


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (RequestDataTooBig("too big"), 413, "payload_too_large"),
        (RecursionError("maximum recursion depth exceeded"), 400, "invalid_json"),
        (OperationalError('server at "10.1.2.3" refused'), 503, "service_unavailable"),
        (InterfaceError("connection already closed"), 503, "service_unavailable"),
        (RedisConnectionError("Error 111 connecting to 10.1.2.4:6379"), 503, "service_unavailable"),
        (RedisTimeoutError("Timeout reading from 10.1.2.4:6379"), 503, "service_unavailable"),
        (ConnectionInterrupted(connection=None), 503, "service_unavailable"),
    ],
)
def test_fault_maps_to_documented_status_without_details(exc, status, code):
    response = api_exception_handler(exc, {})

    assert response.status_code == status
    assert response.data["error"]["code"] == code
    assert "10.1.2" not in str(response.data)
    if status == 503:
        assert response["Retry-After"] == "5"


def test_a_real_bug_is_still_a_500():
    """An integrity error is our bug, not an outage: it stays a logged 500."""
    response = api_exception_handler(IntegrityError("duplicate key"), {})

    assert response.status_code == 500
    assert response.data["error"]["code"] == "server_error"
