import logging

from django.contrib.auth import get_user_model
from rest_framework import authentication, exceptions

from core.clientaddr import client_address_get
from core.exceptions import CACHE_UNAVAILABLE_ERRORS
from core.rawsql import model_rows_get

from .keys import api_key_is_well_formed
from .selectors import api_key_identity_get
from .services import auth_failure_record, invalid_key_refusal_record

logger = logging.getLogger("tollgate.accounts")


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer sk_agentai_…``. Sets ``request.auth`` to the ApiKeyIdentity.

    Failed authentications are limited per client address (``AUTH_FAILURES_PER_MINUTE``,
    ``core.clientaddr``): the per-minute rate limit is per key, so without this a flood of
    well-formed random keys, or a client looping on a revoked key, would cost a database query
    each, unbounded. Once an address has had N refused keys this minute, its keys are answered
    ``429 too_many_failed_authentications`` (with ``Retry-After``) without a database query.

    Where the check sits, so that a valid key pays nothing: a refusal costs one INCR
    (``auth_failure_record``), which also answers the (N+1)-th refusal with the 429. The counter
    is only *read* when the shared cache does not know the presented key, i.e. just before the
    database lookup it guards (``api_key_identity_get(client_address=…)``). A key whose identity
    is cached, the hot case, is decided with the one cache GET it always cost; keys the fast
    lane serves never reach this class (unknown, revoked and expired keys always do: the fast
    lane only handles keys this process has authenticated here, and falls back to the ORM gate,
    which calls this class, whenever the cached identity is missing, revoked or expired).

    A valid key from a throttled address is served when the cache knows it, and refused like
    any other key when it does not (its cached identity lapsed or was never made) until the
    window ends, at most a minute later. We do not refuse everything from the address: a NAT'd
    office, a CI fleet or a mobile carrier shares one address, and one colleague's script
    looping on a revoked key must not take everyone's working keys down. What the limit is for
    is the database and unknown-key floods; an attacker holding one valid key gains nothing
    from it (those calls are billed and rate-limited per key, and guessing other keys, 238
    random bits each, stays at N database lookups a minute). Refusing every key would also
    need a counter read on every call, the round trip the hot path must not pay.

    Malformed keys (wrong prefix, shape or checksum) are refused with no query and no cache
    access at all, so they are neither counted nor throttled.
    """

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid API key.")
        try:
            raw_key = header[1].decode()
        except UnicodeError as exc:
            raise exceptions.AuthenticationFailed("Invalid API key.") from exc
        if not api_key_is_well_formed(raw_key):  # no query, no cache: nothing to count or throttle
            raise exceptions.AuthenticationFailed("Invalid API key.")
        address = client_address_get(request)
        identity = api_key_identity_get(raw_key=raw_key, client_address=address)
        if identity is None:
            self._refused(raw_key, address=address)
        # Checked on every call so deactivating a user takes effect at once; one precompiled
        # statement (no queryset compilation on the proxy's hot path).
        users = model_rows_get(get_user_model(), where='"is_active" AND "id" = %s', params=[identity.user_id])
        user = users[0] if users else None
        if user is None:
            self._refused(raw_key, address=address)
        return user, identity

    def _refused(self, raw_key: str, *, address: str):
        """401, after counting the refusal against the address (429 past its limit, with no
        further work) and against the key's owner (the operator's abuse list)."""
        try:
            auth_failure_record(address=address)
        except CACHE_UNAVAILABLE_ERRORS as exc:  # the request is refused either way: say 401
            logger.warning("failed authentication not counted", extra={"error": type(exc).__name__})
        try:
            invalid_key_refusal_record(raw_key=raw_key)
        except Exception as exc:  # a count lost to an outage must not turn the 401 into an error
            logger.warning("invalid key refusal not counted", extra={"error": type(exc).__name__})
        raise exceptions.AuthenticationFailed("Invalid API key.")

    def authenticate_header(self, request):
        return 'Bearer realm="api"'
