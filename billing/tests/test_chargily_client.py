"""The Chargily HTTP client: URLs per mode, whole-dinar amounts, error mapping, signatures.
HTTP is stubbed with ``responses`` (an unstubbed call fails the test)."""

import json

import pytest
import requests
import responses

from billing.gateways import chargily as chargily_client

KW = {
    "amount_minor": 159_000,
    "success_url": "https://app.example/ok",
    "failure_url": "https://app.example/ko",
    "webhook_endpoint": "https://app.example/payment/webhook/chargily",
    "description": "Tollgate Student",
    "metadata": {"reference": "chg_1"},
}
CREATED = {
    "id": "01hj5mmk0ewa5e8pgzrgsxd8ka",
    "checkout_url": "https://pay.chargily.dz/c/1/pay",
    "status": "pending",
}


@pytest.fixture
def keys(settings):
    settings.CHARGILY_API_KEY = "test_pk_x"
    settings.CHARGILY_SECRET_KEY = "test_sk_very_secret"
    settings.CHARGILY_API_BASE = ""
    return settings


@pytest.mark.parametrize(
    ("mode", "url"),
    [
        ("test", "https://pay.chargily.net/test/api/v2/checkouts"),
        ("live", "https://pay.chargily.net/api/v2/checkouts"),
    ],
)
@responses.activate
def test_mode_selects_the_api_base(mode, url, keys):
    keys.CHARGILY_MODE = mode
    responses.post(url, json=CREATED)
    assert chargily_client.checkout_create(**KW)["id"] == CREATED["id"]
    body = json.loads(responses.calls[0].request.body)
    assert body["amount"] == 1590 and body["currency"] == "dzd" and body["metadata"] == {"reference": "chg_1"}
    assert responses.calls[0].request.headers["Authorization"] == "Bearer test_sk_very_secret"


@responses.activate
def test_api_base_override(keys):
    keys.CHARGILY_API_BASE = "http://127.0.0.1:9999/v2"
    responses.post("http://127.0.0.1:9999/v2/checkouts", json=CREATED)
    assert chargily_client.checkout_create(**KW)["checkout_url"] == CREATED["checkout_url"]


@responses.activate
def test_validation_error_is_mapped_without_the_secret(keys):
    responses.post(
        "https://pay.chargily.net/test/api/v2/checkouts",
        json={"message": "The success url field must be a valid URL."},
        status=422,
    )
    with pytest.raises(chargily_client.ChargilyServiceError) as exc:
        chargily_client.checkout_create(**KW)
    assert exc.value.status == 422 and not exc.value.retryable
    assert "success url" in exc.value.message and "test_sk_very_secret" not in exc.value.message


@responses.activate
def test_server_error_and_connection_error_are_retryable(keys):
    responses.post("https://pay.chargily.net/test/api/v2/checkouts", body="<html>oops</html>", status=503)
    with pytest.raises(chargily_client.ChargilyServiceError) as exc:
        chargily_client.checkout_create(**KW)
    assert exc.value.retryable and exc.value.status == 503
    responses.replace(
        responses.POST,
        "https://pay.chargily.net/test/api/v2/checkouts",
        body=requests.ConnectionError("refused"),
    )
    with pytest.raises(chargily_client.ChargilyServiceError) as exc:
        chargily_client.checkout_create(**KW)
    assert exc.value.retryable and exc.value.status is None


@responses.activate
def test_answer_without_a_checkout_url_is_an_error(keys):
    responses.post("https://pay.chargily.net/test/api/v2/checkouts", json={"id": "x"})
    with pytest.raises(chargily_client.ChargilyServiceError):
        chargily_client.checkout_create(**KW)


def test_only_whole_dinars_can_be_charged():
    assert chargily_client.dzd_minor_to_amount(159_000) == 1590
    with pytest.raises(ValueError):
        chargily_client.dzd_minor_to_amount(159_050)


@pytest.mark.parametrize(
    ("signature", "secret", "valid"),
    [
        ("good", "s3cret", True),
        ("good-with-newline", "s3cret", True),
        ("", "s3cret", False),
        ("good", "", False),
        ("other-secret", "s3cret", False),
        ("truncated", "s3cret", False),
        ("not-hex-é", "s3cret", False),
    ],
)
def test_signature_matrix(signature, secret, valid):
    payload = b'{"id":"evt","type":"checkout.paid"}'
    good = chargily_client.signature_compute(payload=payload, secret="s3cret")
    header = {
        "good": good,
        "good-with-newline": good + "\n",
        "": "",
        "other-secret": chargily_client.signature_compute(payload=payload, secret="other"),
        "truncated": good[:-2],
        "not-hex-é": "é" * 64,
    }[signature]
    assert chargily_client.signature_is_valid(payload=payload, signature=header, secret=secret) is valid
