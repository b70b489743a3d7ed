from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from accounts import views as accounts_views
from core import views as core_views

urlpatterns = [
    path("health", core_views.health, name="health"),
    # Browsers ask for /favicon.ico whatever the page links: send them to the SVG one.
    path("favicon.ico", RedirectView.as_view(url=static("img/favicon.svg"), permanent=True)),
    # The admin's credential forms, behind the same attempt limits as the site's (accounts).
    path("admin/login/", accounts_views.admin_login),
    path("admin/password_change/", accounts_views.admin_password_change),
    path("admin/", admin.site.urls),
    # The language switcher's form (base.html) posts to set_language: it sets the language cookie.
    path("i18n/setlang/", accounts_views.set_language, name="set_language"),  # also stores User.language
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    # Each app owns its URL modules; see <app>/urls.py.
    path("", include("dashboards.urls")),  # first: its /dashboard/ replaces the placeholder
    path("", include("accounts.urls")),
    path("", include("billing.urls")),
    path("", include("credits.urls")),
    path("", include("notifications.urls")),
    path("", include("proxy.urls")),
    path("", include("organizations.urls")),
    path("", include("core.urls")),
    # Last: any other /api/ URL answers the JSON 404, also with DEBUG on (no HTML route list).
    re_path(r"^api/", core_views.api_not_found, name="api-not-found"),
]

handler404 = "core.views.not_found"
handler500 = "core.views.server_error"
