import pytest
from django.template import engines
from django.test import RequestFactory

from accounts.tenancy import SESSION_WORKSPACE_KEY
from credits.context_processors import MODAL_DISMISSED_SESSION_KEY, credits_badge
from credits.models import CreditAccount, UpsellEvent


@pytest.fixture
def page_client(client, user):
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_credits_page_shows_packs_best_value_history_and_badge(catalogue, workspace, fund, page_client):
    fund(workspace, 120)

    response = page_client.get("/credits/")

    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('class="card credits-pack') == 3
    best = html.split("credits-pack--best", 1)[1].split("</form>", 1)[0]
    # The lowest price per credit (0.139 EUR), though the stored flag still sits on Pack 500.
    assert "Pack 1000" in best and "Best value" in best and "0.139 EUR per credit" in best
    assert html.count("Best value") == 1
    assert "0.19 EUR per credit" in html and "0.158 EUR per credit" in html
    assert "79.00 EUR" in html and "19.00 EUR" in html
    assert "data-credits-badge" in html and "<strong data-credits-balance>120</strong>" in html
    assert "Grant (admin)" in html and "+120" in html
    assert "credits-low-modal" not in html  # 120 is not low
    assert UpsellEvent.objects.filter(workspace=workspace, kind="view").count() == 1


@pytest.mark.django_db
def test_credits_page_shows_the_modal_when_low_until_dismissed(
    catalogue, workspace, fund, page_client, settings
):
    settings.CREDITS_LOW_THRESHOLD = 20
    fund(workspace, 7)

    html = page_client.get("/credits/").content.decode()
    assert 'id="credits-low-modal"' in html
    assert "Only 7 credits left" in html
    assert html.count("/credits/buy/pack_") >= 6  # the page's packs and the modal's

    dismissed = page_client.post("/credits/modal/dismiss/", {"next": "/credits/"})
    assert dismissed.status_code == 302 and dismissed["Location"] == "/credits/"
    assert 'id="credits-low-modal"' not in page_client.get("/credits/").content.decode()


@pytest.mark.django_db
def test_no_modal_at_zero_balance(catalogue, page_client):
    assert 'id="credits-low-modal"' not in page_client.get("/credits/").content.decode()


@pytest.mark.django_db
def test_dismiss_refuses_offsite_redirects(page_client):
    response = page_client.post("/credits/modal/dismiss/", {"next": "//evil.example/"})

    assert response["Location"] == "/dashboard/"


@pytest.mark.django_db
def test_modal_view_is_recorded(workspace, page_client):
    assert page_client.post("/credits/modal/seen/", {"kind": "modal_view"}).status_code == 204
    assert page_client.post("/credits/modal/seen/", {"kind": "purchase"}).status_code == 400
    assert list(UpsellEvent.objects.values_list("kind", "workspace_id")) == [
        (UpsellEvent.Kind.MODAL_VIEW, workspace.pk)
    ]


@pytest.mark.django_db
def test_pages_need_login(client):
    response = client.get("/credits/")

    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.django_db
def test_buy_button_redirects_to_the_checkout(catalogue, user, page_client, settings):
    settings.DEBUG = True
    settings.SIMULATED_CHECKOUT_ENABLED = True
    settings.STRIPE_SECRET_KEY = ""
    settings.SITE_URL = "http://testserver"
    settings.CHECKOUT_REDIRECT_HOSTS = ["testserver"]

    response = page_client.post("/credits/buy/pack_500/")

    assert response.status_code == 302
    assert response["Location"].startswith("http://testserver/billing/simulated-checkout/cs_test_sim_")


@pytest.mark.django_db
def test_buy_button_for_an_unknown_pack_comes_back_with_a_message(catalogue, page_client):
    response = page_client.post("/credits/buy/pack_nope/", follow=True)

    assert response.redirect_chain[-1][0] == "/credits/"
    assert "Unknown credit pack" in response.content.decode()


@pytest.mark.django_db
def test_context_processor_renders_badge_and_modal_in_any_template(
    catalogue, user, workspace, fund, settings
):
    """How the dashboard header uses it: include the two snippets, nothing else."""
    settings.CREDITS_LOW_THRESHOLD = 20
    fund(workspace, 5)
    request = RequestFactory().get("/dashboard/")
    request.user = user
    request.session = {}
    template = engines["django"].from_string(
        '{% include "credits/_badge.html" %}{% include "credits/_low_balance_modal.html" %}'
    )

    html = template.render({**credits_badge(request), "request": request}, request)

    assert "credits-badge--low" in html and "<strong data-credits-balance>5</strong>" in html
    assert 'id="credits-low-modal"' in html and "Pack 500" in html
    request.session[MODAL_DISMISSED_SESSION_KEY] = True
    assert 'id="credits-low-modal"' not in template.render(
        {**credits_badge(request), "request": request}, request
    )


@pytest.mark.django_db
def test_context_processor_costs_no_query_when_unused(user, django_assert_num_queries):
    request = RequestFactory().get("/")
    request.user = user
    request.session = {}
    with django_assert_num_queries(0):
        credits_badge(request)


# --- the workspace and its roles ---------------------------------------------------------------


def _simulated_checkout(settings):
    settings.DEBUG = True
    settings.SIMULATED_CHECKOUT_ENABLED = True
    settings.STRIPE_SECRET_KEY = ""
    settings.SITE_URL = "http://testserver"
    settings.CHECKOUT_REDIRECT_HOSTS = ["testserver"]


def _as_member_of(client, person, workspace):
    """Log ``person`` in with ``workspace`` chosen in the switcher."""
    client.force_login(person)
    session = client.session
    session[SESSION_WORKSPACE_KEY] = workspace.pk
    session.save()
    return client


@pytest.mark.django_db
def test_the_page_shows_the_chosen_workspaces_shared_credits(catalogue, client, workspace, member, fund):
    fund(workspace, 120)
    developer = member("developer")
    fund(developer.personal_workspace, 3)

    html = _as_member_of(client, developer, workspace).get("/credits/").content.decode()

    assert "<strong data-credits-balance>120</strong>" in html and "+120" in html
    assert UpsellEvent.objects.get().workspace_id == workspace.pk


@pytest.mark.django_db
def test_a_developer_sees_no_buy_button_and_cannot_buy(catalogue, client, workspace, member, fund, settings):
    _simulated_checkout(settings)
    settings.CREDITS_LOW_THRESHOLD = 20
    fund(workspace, 7)  # low: the modal would offer packs to a buyer
    client = _as_member_of(client, member("developer"), workspace)

    html = client.get("/credits/").content.decode()
    response = client.post("/credits/buy/pack_500/")

    assert "/credits/buy/" not in html and 'id="credits-low-modal"' not in html
    assert "data-buy-needs-role" in html and html.count('class="card credits-pack') == 3
    assert response.status_code == 403
    assert not UpsellEvent.objects.filter(kind="click").exists()


@pytest.mark.django_db
def test_a_billing_member_buys_for_the_workspace(catalogue, client, workspace, member, settings):
    _simulated_checkout(settings)
    client = _as_member_of(client, member("billing"), workspace)

    assert "/credits/buy/pack_500/" in client.get("/credits/").content.decode()
    response = client.post("/credits/buy/pack_500/")
    paid = client.post(response["Location"].replace("http://testserver", ""), {"action": "pay"})

    assert paid.status_code == 302
    assert CreditAccount.objects.get(workspace=workspace).balance == 500
    assert UpsellEvent.objects.get(kind="click").workspace_id == workspace.pk
