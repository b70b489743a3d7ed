"""``/v1/messages`` with the ``anthropic`` SDK and ``/v1/responses`` with the ``openai`` SDK and
LangChain, against a live Tollgate on the fake upstream: answers, streams, errors and the books."""

import anthropic
import openai
import pytest
from langchain_openai import ChatOpenAI

from credits.models import EndpointCost
from credits.selectors import credit_balance_get
from credits.services import credit_grant
from proxy.models import UsageEvent

from ..factories import UserFactory, global_key_set, plan_configure
from ..settled import token_counter_settled, usage_events_wait

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def routed(caller, fake_upstream, live_asgi):
    user, plaintext, _client = caller
    plan_configure(weights={"groq": 100})
    global_key_set("groq")
    return user, plaintext, live_asgi, fake_upstream


@pytest.fixture
def claude(routed):
    user, plaintext, url, fake = routed
    return user, anthropic.Anthropic(base_url=f"{url}/api/proxy", api_key=plaintext, max_retries=0), fake


def test_the_anthropic_sdk_gets_a_message_and_the_call_is_billed_from_reported_usage(claude):
    user, client, fake = claude
    workspace = user.personal_workspace

    message = client.messages.create(
        model="claude-sonnet-4",
        max_tokens=50,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hello!"}],
    )

    assert message.content[0].text == "Hello! How can I help?"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (10, 15)
    sent = fake.requests[-1]
    assert sent["path"] == "/groq/chat/completions"
    assert sent["json"]["messages"][0] == {"role": "system", "content": "Be brief."}
    [event] = usage_events_wait(workspace)
    assert event.endpoint == "/api/proxy/v1/messages" and event.status_code == 200
    assert (event.prompt_tokens, event.completion_tokens) == (10, 15)
    assert token_counter_settled(workspace, 25).used == 25


def test_the_anthropic_sdk_streams_a_message_with_usage_at_the_end(claude):
    user, client, _fake = claude
    workspace = user.personal_workspace

    with client.messages.stream(
        model="claude-sonnet-4", max_tokens=50, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text == "word " * 5
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (10, 5)
    [event] = usage_events_wait(workspace)
    assert (event.prompt_tokens, event.completion_tokens, event.is_estimated) == (10, 5, False)


def test_the_key_in_x_api_key_and_errors_in_anthropic_shape(claude, routed):
    _user, _client, _fake = claude
    _user, _plaintext, url, _fake = routed
    wrong = anthropic.Anthropic(base_url=f"{url}/api/proxy", api_key="sk_agentai_" + "x" * 40, max_retries=0)

    with pytest.raises(anthropic.AuthenticationError) as caught:
        wrong.messages.create(
            model="claude-sonnet-4", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "authentication_error"


def test_what_messages_cannot_carry_is_a_400_naming_it_and_charges_nothing(claude):
    user, client, fake = claude
    workspace = user.personal_workspace

    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="claude-sonnet-4",
            max_tokens=5,
            messages=[{"role": "user", "content": [{"type": "document", "source": {}}]}],
        )

    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert "document" in caught.value.body["error"]["message"]
    assert fake.requests == []
    assert not UsageEvent.objects.filter(workspace=workspace, status_code=200).exists()


def test_an_unknown_model_on_messages_is_a_404_not_found_error(claude, settings):
    _user, client, fake = claude
    settings.PROXY_ANY_MODEL_PLANS = []  # the tests' "free" plan does not serve any model

    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(
            model="my-custom-model", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )

    assert caught.value.body["error"] == {
        "type": "not_found_error",
        "message": caught.value.body["error"]["message"],
        "code": "model_not_found",
    }
    assert fake.requests == []


@pytest.fixture
def gpt(routed):
    user, plaintext, url, fake = routed
    return user, openai.OpenAI(base_url=f"{url}/api/proxy/v1", api_key=plaintext, max_retries=0), fake


def test_the_openai_sdk_gets_a_response_and_it_is_billed(gpt):
    user, client, fake = gpt
    workspace = user.personal_workspace

    response = client.responses.create(
        model="gpt-4o-mini", instructions="Be brief.", input="Hello!", max_output_tokens=40
    )

    assert response.output_text == "Hello! How can I help?"
    assert response.status == "completed"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (10, 15)
    assert fake.requests[-1]["json"]["max_tokens"] == 40
    [event] = usage_events_wait(workspace)
    assert event.endpoint == "/api/proxy/v1/responses"
    assert token_counter_settled(workspace, 25).used == 25


def test_the_openai_sdk_streams_a_response_and_reads_usage_from_response_completed(gpt):
    user, client, _fake = gpt
    workspace = user.personal_workspace

    with client.responses.stream(model="gpt-4o-mini", input="Hi") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()

    assert "".join(deltas) == "word " * 5 == final.output_text
    assert (final.usage.input_tokens, final.usage.output_tokens) == (10, 5)
    [event] = usage_events_wait(workspace)
    assert (event.prompt_tokens, event.completion_tokens) == (10, 5)


def test_previous_response_id_is_refused_naming_it(gpt):
    _user, client, fake = gpt

    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="gpt-4o-mini", input="Hi", previous_response_id="resp_123")

    assert caught.value.body["param"] == "previous_response_id"
    assert fake.requests == []


def test_langchain_chat_openai_on_the_responses_api(routed):
    _user, plaintext, url, _fake = routed
    llm = ChatOpenAI(
        model="gpt-4o-mini",
        base_url=f"{url}/api/proxy/v1",
        api_key=plaintext,
        use_responses_api=True,
        max_retries=0,
    )

    reply = llm.invoke("Hello!")

    assert reply.text == "Hello! How can I help?"
    assert reply.usage_metadata["input_tokens"] == 10


def test_messages_paid_in_credits_cost_what_a_chat_call_costs(claude):
    """Quota exhausted: a Messages call is paid at the chat endpoint's credit price."""
    user, client, _fake = claude
    workspace = user.personal_workspace
    plan_configure(weights={"groq": 100}, limits={"llm_tokens": 10, "requests": None, "emails": 0})
    EndpointCost.objects.update_or_create(
        endpoint="/api/proxy/v1/chat/completions",
        defaults={"per_call": 3, "per_1000_units": 0, "unit": EndpointCost.Unit.REQUESTS, "is_active": True},
    )
    credit_grant(workspace=workspace, amount=100, admin_user=UserFactory(is_staff=True))

    client.messages.create(
        model="claude-sonnet-4", max_tokens=20, messages=[{"role": "user", "content": "x"}]
    )

    [event] = usage_events_wait(workspace)
    assert (event.endpoint, event.credits_charged) == ("/api/proxy/v1/messages", 3)
    assert credit_balance_get(workspace=workspace).balance == 97
