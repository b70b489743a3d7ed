import re
import uuid

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import Http404, HttpResponseBadRequest, JsonResponse
from django.urls import Resolver404, get_urlconf, resolve
from servestatic.middleware import ServeStaticMiddleware
from servestatic.responders import MissingFileError

from .exceptions import ApiError
from .logging import request_id_var

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _nul_refusal(request):
    """A 400 for a URL carrying a NUL character (path or query string), which no text column
    can store: refused at the door rather than failing a query later (a 500). Bodies are
    checked by their parsers (``core.jsonbody``, Django's form fields)."""
    if "\x00" not in request.path and "%00" not in request.META.get("QUERY_STRING", ""):
        return None
    if request.path.startswith("/api/"):
        error = ApiError("invalid_request", "The URL contains a NUL character (%00).")
        return JsonResponse(error.as_dict(), status=400)
    return HttpResponseBadRequest("The URL contains a NUL character (%00).", content_type="text/plain")


class RequestIdMiddleware:
    """Gives each request an id (client's X-Request-ID if sane) for logs and responses, and
    refuses a URL with a NUL character (``_nul_refusal``).

    Sync and async capable, so async proxy views under ASGI are not pushed through
    Django's single sync thread.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def _begin(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        return request_id, request_id_var.set(request_id)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        request_id, token = self._begin(request)
        try:
            response = _nul_refusal(request) or self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = request_id
        return response

    async def __acall__(self, request):
        request_id, token = self._begin(request)
        try:
            response = _nul_refusal(request) or await self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = request_id
        return response


class ApiFastPathMiddleware:
    """Serves the metered proxy's async API views straight from the URL resolver.

    Sessions, CSRF, auth, messages and clickjacking do nothing for a Bearer-key JSON API (DRF
    authenticates; there is no cookie or frame), and each ``MiddlewareMixin`` hook costs a
    thread hop under ASGI. So a URL under ``API_FAST_PATH_PREFIXES`` that resolves to an async
    view is called here (right after ``RequestIdMiddleware``); everything else takes the full
    stack. ``nosniff`` is still sent.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.prefixes = tuple(settings.API_FAST_PATH_PREFIXES)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        return self.get_response(request)

    async def __acall__(self, request):
        if not self.prefixes or not request.path_info.startswith(self.prefixes):
            return await self.get_response(request)
        try:
            match = _resolve(request.path_info)
        except Resolver404:
            return await self.get_response(request)
        if not iscoroutinefunction(match.func):
            return await self.get_response(request)
        request.resolver_match = match
        response = await match.func(request, *match.args, **match.kwargs)
        if callable(getattr(response, "render", None)) and not response.is_rendered:
            response.render()  # DRF's JSON: no template, no database
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response


_matches: dict[tuple, object] = {}
_MATCHES_MAX = 1000


def _resolve(path: str):
    """``resolve`` memoised for routes without arguments (the proxy's few fixed URLs), so a call
    does not walk the URL conf. Routes with arguments are resolved every time."""
    key = (get_urlconf(), path)
    match = _matches.get(key)
    if match is None:
        match = resolve(path)
        if not match.args and not match.kwargs:
            if len(_matches) >= _MATCHES_MAX:
                _matches.clear()
            _matches[key] = match
    return match


@receiver(setting_changed)
def _forget_matches(*, setting, **kwargs):
    if setting == "ROOT_URLCONF":
        _matches.clear()


class StaticFilesMiddleware(ServeStaticMiddleware):
    """servestatic, with a missing file answered 404 in DEBUG too.

    servestatic raises ``MissingFileError`` (a 500 page) for an unknown ``/static/`` path when
    DEBUG is on, to help whoever mistyped it; a browser asking for a stale asset under
    ``make run`` should get the 404 production gives.
    """

    async def __call__(self, request):
        try:
            return await super().__call__(request)
        except MissingFileError:
            raise Http404("No such static file.") from None
