"""The project's URLs with the workspace ones wired the way ``accounts/urls.py`` will wire them
(``accounts.workspace_urls.urlpatterns`` added to the ``accounts`` namespace) and the workspace
admin registered. Tests here run with ``pytest.mark.urls(URLS)``; once the project wires them
itself this module changes nothing (patterns already present are not added twice)."""

from django.contrib import admin
from django.urls import URLResolver, include, path

import accounts.admin_workspaces  # noqa: F401 (registers the workspace admin)
from accounts import urls as accounts_urls
from accounts import workspace_urls
from config import urls as project_urls


def _accounts_with_workspaces():
    patterns = list(accounts_urls.urlpatterns)
    names = {pattern.name for pattern in patterns}
    patterns += [pattern for pattern in workspace_urls.urlpatterns if pattern.name not in names]
    return patterns, "accounts"


def _rewired(pattern):
    if isinstance(pattern, URLResolver) and pattern.namespace == "accounts":
        return path("", include(_accounts_with_workspaces()))
    if isinstance(pattern, URLResolver) and pattern.namespace == "admin":
        return path("admin/", admin.site.urls)  # rebuilt: the workspace admin registered above
    return pattern


urlpatterns = [_rewired(pattern) for pattern in project_urls.urlpatterns]
handler404 = project_urls.handler404
handler500 = project_urls.handler500
