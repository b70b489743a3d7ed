import logging

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpResponsePermanentRedirect, JsonResponse
from django.shortcuts import render
from django.urls import Resolver404, resolve
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.defaults import page_not_found
from django.views.defaults import server_error as django_server_error

from .exceptions import error_body

logger = logging.getLogger("tollgate.health")


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "down"; the reason is logged
        logger.warning("health: database check failed: %s", type(exc).__name__)
        return "error"
    return "ok"


def _check_cache() -> str:
    try:
        cache.set("health:ping", "1", timeout=5)
        if cache.get("health:ping") != "1":
            return "error"
    except Exception as exc:  # any cache client error means "down"
        logger.warning("health: cache check failed: %s", type(exc).__name__)
        return "error"
    return "ok"


@never_cache
def health(request):
    """Liveness and readiness: 200 when the database and cache answer, else 503 naming them."""
    checks = {"database": _check_database(), "cache": _check_cache()}
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "error", "checks": checks},
        status=200 if healthy else 503,
    )


def home(request):
    """The landing page. Its plans and providers come from template tags of billing and accounts
    (core imports no app); the SDK snippet points at this site's OpenAI-compatible route."""
    return render(request, "core/home.html", {"proxy_base_url": f"{settings.SITE_URL}/api/proxy/v1"})


def not_found(request, exception=None):
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    return page_not_found(request, exception)


@csrf_exempt  # a POST to an unknown URL is a 404, not a CSRF failure page
async def api_not_found(request, *args, **kwargs):
    """Every ``/api/…`` URL no route matched (the last pattern of ``config.urls``).

    Without it, DEBUG answers Django's HTML 404, which lists every URL pattern; through here the
    answer is the API's JSON 404 whatever DEBUG is. ``APPEND_SLASH`` keeps working for the few
    API routes that end in a slash (``/api/docs`` → ``/api/docs/``), as CommonMiddleware would.
    """
    path = request.path_info
    if settings.APPEND_SLASH and request.method in ("GET", "HEAD") and not path.endswith("/"):
        try:
            match = resolve(path + "/")
        except Resolver404:
            match = None
        if match is not None and match.func is not api_not_found:
            return HttpResponsePermanentRedirect(request.get_full_path(force_append_slash=True))
    return JsonResponse(error_body("not_found", "Not found."), status=404)


def server_error(request):
    if request.path.startswith("/api/"):
        return JsonResponse(
            error_body("server_error", "Internal server error."),
            status=500,
            headers={"x-should-retry": "true"},
        )
    return django_server_error(request)
