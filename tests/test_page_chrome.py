"""What every page carries: a favicon (and ``/favicon.ico`` answered), the theme toggle with
its no-flash script, and the progress script on checkout and key-creation forms."""

import re

import pytest
from django.contrib.staticfiles import finders

from .conftest import session_client

pytestmark = pytest.mark.django_db


def test_favicon_is_linked_and_favicon_ico_is_not_a_404(client):
    html = client.get("/").content.decode()
    icon = re.search(r'<link rel="icon" href="/static/([^"]+)" type="image/svg\+xml">', html).group(1)
    assert finders.find(icon)

    response = client.get("/favicon.ico")

    assert response.status_code == 301
    assert response["Location"] == f"/static/{icon}"  # the file found above


def test_theme_toggle_and_its_script_are_on_every_page(client, user_a):
    for html in (
        client.get("/pricing/").content.decode(),
        session_client(user_a).get("/dashboard/").content.decode(),
    ):
        head = html.split("</head>", 1)[0]
        # Applied in <head> before the stylesheet: no light flash when dark was chosen.
        assert 'localStorage.getItem("theme")' in head and "data-theme" in head
        assert head.index("localStorage") < head.index("css/app.css")
        assert re.search(r"<button[^>]*data-theme-toggle", html)
        assert "js/theme.js" in head and "js/progress.js" in head
    with open(finders.find("css/app.css")) as stylesheet:
        css = stylesheet.read()
    assert "prefers-color-scheme: dark" in css and ':root[data-theme="dark"]' in css


def test_checkout_and_key_creation_forms_show_progress(client, user_a, catalog):
    pricing = session_client(user_a).get("/pricing/").content.decode()
    assert re.search(r'<form method="post" action="/billing/upgrade/pro/" data-progress>', pricing)
    keys = session_client(user_a).get("/keys/").content.decode()
    create = re.search(r'<form[^>]*action="/dashboard/keys/"[^>]*>', keys).group(0)
    assert "data-progress" in create
