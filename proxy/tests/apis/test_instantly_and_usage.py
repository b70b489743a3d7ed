import pytest
from rest_framework.test import APIClient

from proxy.models import UsageEvent

from ..factories import global_key_set, key_for, plan_configure

pytestmark = pytest.mark.django_db(transaction=True)

SEND = "/api/proxy/instantly/send"
EMAIL = {"to": "prospect@example.com", "subject": "Test Email", "body": "Hello from AgentAI!"}


def test_send_has_the_original_shape_and_counts_one_email(caller, fake_upstream):
    user, _plaintext, client = caller
    global_key_set("instantly")

    response = client.post(SEND, EMAIL, format="json")

    assert response.status_code == 200, response.content
    data = response.json()
    assert data["success"] is True
    assert data["messageId"] == "msg_1"
    assert (data["quota"]["used"], data["quota"]["limit"], data["quota"]["remaining"]) == (1, 100, 99)
    assert data["quota"]["resetDate"].endswith("Z")
    forwarded = fake_upstream.requests[-1]
    assert forwarded["path"] == "/instantly/emails/send"
    assert forwarded["json"]["subject"] == "Test Email"
    assert UsageEvent.objects.get().emails == 1


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**EMAIL, "to": "not-an-address"}, "to"),
        ({**EMAIL, "subject": "x" * 1000}, "subject"),
        ({"to": "a@example.com", "subject": "s"}, "body"),
    ],
)
def test_send_validates(caller, body, param):
    _user, _plaintext, client = caller

    response = client.post(SEND, body, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_send_failure_counts_nothing(caller, fake_upstream):
    _user, _plaintext, client = caller
    global_key_set("instantly")
    fake_upstream.mode = "500"

    response = client.post(SEND, EMAIL, format="json")

    assert response.status_code == 502
    event = UsageEvent.objects.get()
    assert (event.emails, event.status_code) == (0, 502)
    assert client.get("/api/proxy/usage").json()["quota"]["instantly"]["used"] == 0


def test_emails_not_in_plan_is_quota_exceeded(caller, fake_upstream):
    plan_configure(limits={"llm_tokens": 1000, "emails": 0, "requests": None})
    global_key_set("instantly")
    _user, _plaintext, client = caller

    response = client.post(SEND, EMAIL, format="json")

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "quota_exceeded"
    assert fake_upstream.requests == []


def test_usage_has_the_original_shape_newest_first_and_only_mine(midday, caller, fake_upstream):
    user, _plaintext, client = caller
    global_key_set("instantly")
    global_key_set("deepseek")
    client.post("/api/proxy/deepseek/chat", {"messages": [{"role": "user", "content": "Hi"}]}, format="json")
    client.post(SEND, EMAIL, format="json")
    other, other_key = key_for()

    other_client = APIClient()
    other_client.credentials(HTTP_AUTHORIZATION=f"Bearer {other_key}")
    other_client.post(SEND, EMAIL, format="json")

    response = client.get("/api/proxy/usage")

    assert response.status_code == 200
    data = response.json()
    assert data["success"] is True
    assert data["quota"]["deepseek"] == {"used": 25, "limit": 1_000_000, "remaining": 999_975}
    assert data["quota"]["instantly"] == {"used": 1, "limit": 100, "remaining": 99}
    assert data["quota"]["resetDate"].endswith("T00:00:00.000Z")
    assert data["quota"]["requests"]["limit"] is None
    assert data["recentUsage"] == [
        {
            "service": "instantly",
            "endpoint": "/api/proxy/instantly/send",
            "emailsSent": 1,
            "statusCode": 200,
            "createdAt": data["recentUsage"][0]["createdAt"],
        },
        {
            "service": "deepseek",
            "endpoint": "/api/proxy/deepseek/chat",
            "tokensUsed": 25,
            "statusCode": 200,
            "createdAt": data["recentUsage"][1]["createdAt"],
        },
    ]


def test_usage_lists_at_most_100_calls_in_few_queries(caller, same_thread_db, django_assert_max_num_queries):
    user, _plaintext, client = caller
    UsageEvent.objects.bulk_create(
        UsageEvent(
            workspace=user.personal_workspace,
            service="router",
            endpoint="/x",
            status_code=200,
            total_tokens=i,
        )
        for i in range(120)
    )
    client.get("/api/proxy/usage")  # warm the key and plan caches

    with django_assert_max_num_queries(6):
        response = client.get("/api/proxy/usage")

    recent = response.json()["recentUsage"]
    assert len(recent) == 100
    assert recent[0]["tokensUsed"] == 119
