import logging

from django.contrib.auth import get_user_model
from rest_framework import authentication, exceptions

from core.clientaddr import client_address_get
from core.exceptions import CACHE_UNAVAILABLE_ERRORS, ApiError
from core.rawsql import model_rows_get

from .keys import api_key_is_well_formed
from .selectors import api_key_identity_get
from .services import auth_failure_record, invalid_key_refusal_record
from .services.verification import email_unverified_error, user_email_verified

logger = logging.getLogger("tollgate.accounts")


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer sk_agentai_…``. Authenticates as the member who created the key,
    with ``request.auth`` the ApiKeyIdentity (whose ``workspace_id`` is the workspace the call
    acts on and is billed to: ``accounts.tenancy``).

    Refused keys are counted per client address (``AUTH_FAILURES_PER_MINUTE``): past the limit,
    a key the shared cache does not know answers ``429 too_many_failed_authentications`` without
    a database query, so key floods cannot load the database. A key whose identity is cached is
    still served, so one looping script behind a shared address does not lock out its
    neighbours; malformed keys cost nothing and are not counted. Why, in docs/accounts.md.
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
        if identity.suspended:
            raise workspace_suspended_error()
        # The key's creator, checked on every call so deactivating them takes effect at once;
        # one precompiled statement (no queryset compilation on the proxy's hot path).
        users = model_rows_get(get_user_model(), where='"is_active" AND "id" = %s', params=[identity.user_id])
        user = users[0] if users else None
        if user is None:
            self._refused(raw_key, address=address)
        if not user_email_verified(user):  # EMAIL_VERIFICATION=mandatory: no free quota to farm
            raise email_unverified_error()
        return user, identity

    def _refused(self, raw_key: str, *, address: str):
        """401, after counting the refusal against the address (429 past its limit, with no
        further work) and against the key's workspace (the operator's abuse list)."""
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


def workspace_suspended_error() -> ApiError:
    return ApiError(
        "workspace_suspended",
        "This workspace is suspended: its API keys are refused until the operator reinstates it."
        " Contact support.",
    )
