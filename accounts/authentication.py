import logging

from django.contrib.auth import get_user_model
from rest_framework import authentication, exceptions

from core.rawsql import model_rows_get

from .selectors import api_key_identity_get
from .services import invalid_key_refusal_record

logger = logging.getLogger("tollgate.accounts")


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer sk_agentai_…``. Sets ``request.auth`` to the ApiKeyIdentity."""

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
        identity = api_key_identity_get(raw_key=raw_key)
        if identity is None:
            self._refused(raw_key)
        # Checked on every call so deactivating a user takes effect at once; one precompiled
        # statement (no queryset compilation on the proxy's hot path).
        users = model_rows_get(get_user_model(), where='"is_active" AND "id" = %s', params=[identity.user_id])
        user = users[0] if users else None
        if user is None:
            self._refused(raw_key)
        return user, identity

    def _refused(self, raw_key: str):
        """401, after counting the refusal against the key's owner (the operator's abuse list)."""
        try:
            invalid_key_refusal_record(raw_key=raw_key)
        except Exception as exc:  # a count lost to an outage must not turn the 401 into an error
            logger.warning("invalid key refusal not counted", extra={"error": type(exc).__name__})
        raise exceptions.AuthenticationFailed("Invalid API key.")

    def authenticate_header(self, request):
        return 'Bearer realm="api"'
