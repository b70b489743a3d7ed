"""The landing page: a three-line SDK snippet pointing at this site, the providers of the registry
and the public plans (billing's pricing selector), with a link to the full pricing page."""

import pytest

from accounts.providers import PROVIDERS
from billing.models import Plan
from billing.services import plan_catalog_seed

pytestmark = pytest.mark.django_db


def test_the_landing_page_shows_the_snippet_providers_and_plans(
    client, settings, django_assert_max_num_queries
):
    settings.SITE_URL = "https://tollgate.example"
    plan_catalog_seed()

    with django_assert_max_num_queries(4):
        html = client.get("/").content.decode()

    snippet = html.split('<pre id="home-snippet"', 1)[1].split("</pre>", 1)[0].split(">", 1)[1]
    lines = snippet.strip().splitlines()
    assert len(lines) == 3 and lines[0] == "from openai import OpenAI"
    assert 'base_url="https://tollgate.example/api/proxy/v1"' in lines[1]
    for provider in PROVIDERS.values():
        assert f'data-provider="{provider.code}">{provider.name}' in html
    for plan in Plan.objects.filter(is_public=True, is_active=True):
        assert f'data-plan="{plan.code}"' in html
    assert 'href="/pricing/"' in html
