"""Streaming clients send ``Accept: text/event-stream``; the proxy must not answer 406."""

import pytest

from ..factories import global_key_set, plan_configure

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/proxy/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 50}


@pytest.mark.parametrize("accept", ["text/event-stream", "text/html", "application/xml"])
def test_any_accept_header_gets_the_json_answer(caller, fake_upstream, accept):
    _user, _plaintext, client = caller
    plan_configure(weights={"groq": 100})
    global_key_set("groq")

    response = client.post(URL, BODY, format="json", HTTP_ACCEPT=accept)

    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json()["quota"]["used"] == 25


def test_errors_stay_json_under_an_event_stream_accept(api_client, db):
    response = api_client.post(URL, BODY, format="json", HTTP_ACCEPT="text/event-stream")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
