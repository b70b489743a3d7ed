"""EMAIL_VERIFICATION=mandatory: an unconfirmed account's keys are refused before any work, on
both gates (the shared-cache script and the ORM path), and work once the address is confirmed."""

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import User
from billing.models import UsageCounter

from ..factories import UserFactory, global_key_set, key_for, plan_configure

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/proxy/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 50}


@pytest.fixture
def unconfirmed(catalog, free_plan):
    plan_configure(weights={"groq": 100}, limits={"llm_tokens": 1_000_000, "emails": 0, "requests": 100})
    global_key_set("groq")
    user = UserFactory(email_verified_at=None)
    _key, plaintext = key_for(user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return user, client


def test_an_unconfirmed_accounts_key_answers_403_and_costs_nothing(unconfirmed, fake_upstream, settings):
    settings.EMAIL_VERIFICATION = "mandatory"
    user, client = unconfirmed
    answers = [client.post(URL, BODY, format="json") for _ in range(3)]  # ORM gate, then the script's

    assert [a.status_code for a in answers] == [403, 403, 403]
    assert {a.json()["error"]["code"] for a in answers} == {"email_unverified"}
    assert fake_upstream.requests == []
    assert not UsageCounter.objects.filter(workspace=user.personal_workspace, used__gt=0).exists()


def test_the_key_works_once_the_address_is_confirmed(unconfirmed, fake_upstream, settings):
    settings.EMAIL_VERIFICATION = "mandatory"
    user, client = unconfirmed
    assert client.post(URL, BODY, format="json").status_code == 403
    User.objects.filter(pk=user.pk).update(email_verified_at=timezone.now())

    assert client.post(URL, BODY, format="json").status_code == 200


def test_optional_verification_serves_an_unconfirmed_account(unconfirmed, fake_upstream, settings):
    settings.EMAIL_VERIFICATION = "optional"
    _user, client = unconfirmed
    assert client.post(URL, BODY, format="json").status_code == 200
