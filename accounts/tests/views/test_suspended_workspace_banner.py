"""Members of a workspace the operator suspended see it on every page, in their language, without
the operator's internal reason; members of a normal workspace see nothing."""

import pytest

from accounts.services.suspension import workspace_reinstate, workspace_suspend
from accounts.tenancy import SESSION_WORKSPACE_KEY
from accounts.tests.factories import SuperuserFactory, UserFactory, team_workspace

pytestmark = pytest.mark.django_db

BANNER = "This workspace is suspended: its API keys are refused. Contact support."
BANNER_FR = "Cet espace de travail est suspendu : ses clés d’API sont refusées. Contactez le support."
REASON = "chargeback fraud under review"
FR = {"HTTP_ACCEPT_LANGUAGE": "fr-FR,fr;q=0.9"}


def _login_in(client, member, workspace):
    client.force_login(member)
    session = client.session
    session[SESSION_WORKSPACE_KEY] = workspace.pk
    session.save()
    return client


def _banner(html: str) -> str:
    return (
        html.split("data-workspace-suspended", 1)[1].split("</div>", 1)[0]
        if "data-workspace-suspended" in html
        else ""
    )


def test_every_page_of_a_suspended_workspace_shows_the_banner_without_the_reason(client):
    owner = UserFactory()
    team = team_workspace(owner=owner, name="Acme")
    workspace_suspend(workspace=team, reason=REASON, actor=SuperuserFactory())
    _login_in(client, owner, team)

    for url in ("/dashboard/", "/credits/", f"/workspaces/{team.pk}/members/", "/accounts/profile/"):
        response = client.get(url)
        html = response.content.decode()
        assert response.status_code == 200, url
        assert BANNER in _banner(html), url
        assert 'role="status" data-workspace-suspended' in html
        assert REASON not in html, url  # the operator's note stays internal

    french = client.get("/dashboard/", **FR).content.decode()
    assert BANNER_FR in _banner(french) and BANNER not in french


def test_a_normal_workspace_shows_no_banner_nor_does_the_members_other_workspace(client):
    owner = UserFactory()
    team = team_workspace(owner=owner, name="Acme")
    workspace_suspend(workspace=team, reason=REASON, actor=SuperuserFactory())
    # The same member in their personal workspace (not suspended): no banner.
    _login_in(client, owner, owner.personal_workspace)
    for url in ("/dashboard/", "/credits/", "/accounts/profile/"):
        assert "data-workspace-suspended" not in client.get(url).content.decode(), url

    other = UserFactory()
    client.force_login(other)
    assert "data-workspace-suspended" not in client.get("/dashboard/").content.decode()


def test_the_banner_goes_away_once_the_workspace_is_reinstated(client):
    owner = UserFactory()
    team = team_workspace(owner=owner, name="Acme")
    operator = SuperuserFactory()
    workspace_suspend(workspace=team, reason=REASON, actor=operator)
    _login_in(client, owner, team)
    assert BANNER in client.get("/dashboard/").content.decode()
    workspace_reinstate(workspace=team, actor=operator)
    assert "data-workspace-suspended" not in client.get("/dashboard/").content.decode()
