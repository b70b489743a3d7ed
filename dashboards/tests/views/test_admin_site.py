"""The branded admin: the index and sidebar group models by task (``ADMIN_GROUPS``), while an
app's own page still lists that app's models."""

import pytest

from dashboards.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

EXPECTED = {
    "Customers": {"Workspace", "User", "ApiKey", "ProviderCredential", "CreditAccount"},
    "Billing": {
        "Plan",
        "Subscription",
        "CheckoutSession",
        "PaymentTransaction",
        "StripeEvent",
        "ChargilyEvent",
        "CreditPack",
        "EndpointCost",
        "LedgerEntry",
    },  # fmt: skip
    "Proxy": {"UsageEvent", "ModelPrice", "ModelRoute", "DailySpend", "UsageDailyRollup"},
    "Operations": {"Organization", "UsageReport", "PeriodicTask", "ReconciliationDrift"},
}


@pytest.fixture
def superuser_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_index_is_branded_and_grouped_by_task(superuser_client):
    response = superuser_client.get("/admin/")

    assert response.status_code == 200
    groups = {app["name"]: {m["object_name"] for m in app["models"]} for app in response.context["app_list"]}
    assert list(groups)[:4] == ["Customers", "Billing", "Proxy", "Operations"]
    for name, models in EXPECTED.items():
        assert models <= groups[name], name
    listed = [m for models in groups.values() for m in models]
    assert len(listed) == len(set(listed))  # each model once
    html = response.content.decode()
    assert "Tollgate operator console" in html and "<title>Run the business | Tollgate admin</title>" in html
    assert 'href="/admin/proxy/usageevent/"' in html


def test_sidebar_on_a_model_page_uses_the_same_groups(superuser_client):
    response = superuser_client.get("/admin/proxy/modelprice/")

    assert response.status_code == 200
    assert [app["name"] for app in response.context["available_apps"]][:4] == [
        "Customers",
        "Billing",
        "Proxy",
        "Operations",
    ]


def test_an_apps_own_page_still_lists_that_app(superuser_client):
    response = superuser_client.get("/admin/credits/")

    assert response.status_code == 200
    (app,) = response.context["app_list"]
    assert app["app_label"] == "credits"
    assert {m["object_name"] for m in app["models"]} >= {"CreditAccount", "LedgerEntry", "CreditPack"}


def test_staff_without_permissions_sees_no_groups(client):
    client.force_login(UserFactory(is_staff=True))

    response = client.get("/admin/")

    assert response.status_code == 200
    assert response.context["app_list"] == []


def test_every_registered_changelist_opens_for_the_operator(superuser_client):
    from django.contrib import admin as django_admin  # noqa: PLC0415 (the live registry, after apps load)

    broken = []
    for model in django_admin.site._registry:
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        response = superuser_client.get(url)
        if response.status_code != 200:
            broken.append((url, response.status_code))

    assert broken == []
