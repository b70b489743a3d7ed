"""The dashboard, the credits page and the operator's customer page in French: translated text,
money as French writes it (``19,00 €``), and the same pages still in English for others."""

import pytest

from accounts.services.member_limits import membership_limits_set
from accounts.tests.factories import SuperuserFactory, UserFactory, api_key_for, member_add, team_workspace
from credits.models import CreditPack, EndpointCost
from credits.services import credit_grant

pytestmark = pytest.mark.django_db

FR = {"HTTP_ACCEPT_LANGUAGE": "fr-FR,fr;q=0.9"}
NBSP = "\u00a0"


@pytest.fixture
def user():
    return UserFactory()


def test_the_dashboard_in_french(client, user):
    api_key_for(user, name="backend")
    client.force_login(user)
    html = client.get("/dashboard/", **FR).content.decode()
    assert "<h1>Vue d’ensemble</h1>" in html
    assert "Dépenses, 30 derniers jours" in html and "Dépenses par modèle" in html
    assert "votre rôle : propriétaire" in html
    assert ">Clés</a>" in html and ">Facturation</a>" in html  # the workspace tabs
    for english in ("Spend, last 30 days", "Usage, last 30 days", "No calls in this period.", "Overview"):
        assert english not in html

    keys = client.get("/keys/", **FR).content.decode()
    assert "<h2>Clés d’API</h2>" in keys and "Créer une clé" in keys and "Nom de la clé" in keys
    assert "Last used" not in keys

    billing = client.get("/billing/", **FR).content.decode()
    assert "<h1>Facturation</h1>" in billing and "Aucun paiement" in billing

    english = client.get("/dashboard/").content.decode()
    assert "Spend, last 30 days" in english and "your role: owner" in english


def test_the_credits_page_in_french_with_french_money(client, user):
    CreditPack.objects.update_or_create(
        code="pack_100",
        defaults={"name": "Pack 100", "credits": 100, "price_minor": 1_900, "currency": "eur"},
    )
    EndpointCost.objects.update_or_create(
        endpoint="/api/proxy/v1/chat/completions",
        defaults={
            "description": "Chat",
            "per_call": 0,
            "per_1000_units": 2,
            "unit": EndpointCost.Unit.TOKENS,
        },
    )
    credit_grant(workspace=user.personal_workspace, amount=50, admin_user=SuperuserFactory(), reason="gift")
    client.force_login(user)
    html = client.get("/credits/", **FR).content.decode()
    assert f"19,00{NBSP}€" in html and f"0,19{NBSP}€ par crédit" in html
    assert "Acheter Pack 100" in html and "Historique" in html and "Attribution (admin)" in html
    assert "2 crédits par tranche de 1" in html and "jetons" in html
    assert "Promotionnels" in html

    english = client.get("/credits/").content.decode()
    assert "19.00 EUR" in english and "0.19 EUR per credit" in english and "Grant (admin)" in english
    assert "2 credits per 1,000 tokens" in english


def test_the_operator_customer_page_in_french(client, user):
    client.force_login(SuperuserFactory())
    html = client.get(f"/admin/customers/{user.personal_workspace.pk}/", **FR).content.decode()
    assert "Forfait et périodes en cours" in html and "Suspendre l’espace de travail" in html
    assert "Plan and current periods" not in html


def test_member_limits_read_in_the_readers_language(client, user):
    """The members page's caps (``billing.services.key_limits``): ``1,000 credits`` and
    ``12.50 EUR`` in English, ``1 000 crédits`` and ``12,50 €`` in French (the API returns only
    numbers)."""
    team = team_workspace(owner=user, name="Acme")
    developer = member_add(team, role="developer")
    limits = [
        {"unit": "credits", "window": "month", "amount": 1000},
        {"unit": "money", "window": "month", "amount": 1250},
    ]
    membership_limits_set(workspace=team, actor=user, user_id=developer.pk, limits=limits)
    client.force_login(user)
    english = client.get(f"/workspaces/{team.pk}/members/").content.decode()
    assert "0 credits of 1,000 credits this month" in english
    assert "0.00 EUR of 12.50 EUR this month" in english
    french = client.get(f"/workspaces/{team.pk}/members/", **FR).content.decode()
    assert f"1{NBSP}000 crédits" in french and f"12,50{NBSP}€" in french


def test_the_api_guides_error_meanings_follow_the_language_and_the_codes_do_not(client):
    french = client.get("/docs/", **FR).content.decode()
    assert "Mauvaise méthode HTTP pour ce point de terminaison." in french
    assert "<code>method_not_allowed</code>" in french
    assert "Wrong HTTP method for this endpoint." in client.get("/docs/").content.decode()
