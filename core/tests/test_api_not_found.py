"""Unknown /api/ URLs answer the API's JSON 404 whatever DEBUG is (issue: DEBUG's HTML 404 listed
every URL pattern)."""

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client

NOT_FOUND = {
    "error": {"message": "Not found.", "type": "not_found_error", "code": "not_found", "param": None}
}


@pytest.fixture(params=[True, False], ids=["debug", "production"])
def debug(request, settings):
    settings.DEBUG = request.param
    return request.param


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
@pytest.mark.parametrize("path", ["/api/no-such-endpoint", "/api/keys/1/nope", "/api/v1/models/x/y/"])
def test_unknown_api_urls_answer_the_json_404(debug, method, path):
    # CSRF checks on: a POST to an unknown URL is still a 404, not a CSRF failure page.
    response = getattr(Client(enforce_csrf_checks=True), method)(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == NOT_FOUND
    assert b"URLconf" not in response.content and b"urlpatterns" not in response.content


def test_the_fast_api_path_answers_the_json_404_too(debug):
    response = async_to_sync(AsyncClient().post)(
        "/api/proxy/v1/nope", data={}, content_type="application/json"
    )

    assert response.status_code == 404
    assert response.json() == NOT_FOUND


def test_an_api_route_that_ends_in_a_slash_still_gets_its_redirect(debug):
    response = Client().get("/api/docs?x=1")

    assert response.status_code == 301
    assert response["Location"] == "/api/docs/?x=1"


@pytest.mark.django_db
def test_known_api_routes_and_pages_are_untouched(settings):
    settings.DEBUG = True
    client = Client()

    assert client.get("/api/keys").json()["error"]["code"] == "invalid_api_key"
    page = client.get("/no-such-page/")
    assert page.status_code == 404 and b"<html" in page.content.lower()  # pages keep Django's 404
