import pytest
from django.core.management import call_command

from proxy.models import ModelPrice, ModelRoute

from .factories import UserFactory

pytestmark = pytest.mark.django_db


def test_seed_is_idempotent_and_keeps_admin_edits():
    call_command("seed_proxy_catalog")
    price = ModelPrice.objects.get(provider="deepseek", model="deepseek-chat")
    assert (str(price.input_usd_per_mtok), str(price.output_usd_per_mtok)) == ("0.280000", "0.420000")
    assert ModelPrice.objects.get(provider="groq", model="llama-3.3-70b-versatile").output_usd_per_mtok == 0
    price.output_usd_per_mtok = 1
    price.save()
    count = ModelPrice.objects.count(), ModelRoute.objects.count()

    call_command("seed_proxy_catalog")

    assert (ModelPrice.objects.count(), ModelRoute.objects.count()) == count
    price.refresh_from_db()
    assert price.output_usd_per_mtok == 1


@pytest.mark.parametrize(
    "model", ["modelprice", "modelroute", "usageevent", "usagedailyrollup", "dailyspend"]
)
def test_admin_changelists_render(client, catalog, model):
    admin = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(admin)

    response = client.get(f"/admin/proxy/{model}/")

    assert response.status_code == 200
