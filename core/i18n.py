"""The viewer's language on HTML pages.

Pages speak the language the person chose with the footer's switcher (Django's ``set_language``
view, kept in the ``django_language`` cookie), else the one their browser asks for
(``Accept-Language``), else English. URLs carry no language prefix. APIs, the proxy and machine
endpoints (``core.timezones.NOT_PAGE_PREFIXES`` and the proxy's fast-path prefixes) stay in
English: their error messages and codes are a contract, and DRF's own messages would otherwise be
translated. Django's ``LocaleMiddleware`` is a ``MiddlewareMixin`` (a thread hop per request under
ASGI) and would also translate the APIs; this one is sync and async capable and skips them.
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.utils import translation
from django.utils.cache import patch_vary_headers

from .timezones import NOT_PAGE_PREFIXES


class PageLocaleMiddleware:
    """Activates the viewer's language for a page (after sessions, before ``CommonMiddleware``)
    and says so in ``Content-Language`` and ``Vary: Accept-Language``. Any other URL runs in
    ``settings.LANGUAGE_CODE`` (English), whatever an earlier request on the thread activated."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.skipped = NOT_PAGE_PREFIXES + tuple(settings.API_FAST_PATH_PREFIXES)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        if request.path_info.startswith(self.skipped):
            translation.deactivate()
            return self.get_response(request)
        self._activate(request)
        return self._mark(self.get_response(request))

    async def __acall__(self, request):
        if request.path_info.startswith(self.skipped):
            translation.deactivate()
            return await self.get_response(request)
        self._activate(request)
        return self._mark(await self.get_response(request))

    @staticmethod
    def _activate(request) -> None:
        language = translation.get_language_from_request(request)
        translation.activate(language)
        request.LANGUAGE_CODE = translation.get_language()

    @staticmethod
    def _mark(response):
        patch_vary_headers(response, ("Accept-Language",))
        response.headers.setdefault("Content-Language", translation.get_language())
        return response
