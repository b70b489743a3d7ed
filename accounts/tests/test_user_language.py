"""The language a person's emails are written in (``User.language``): the footer's switcher
stores it for a signed-in person, and sign-up on a French page starts them in French."""

import pytest
from django.conf import settings
from django.core import mail

from accounts.models import User
from accounts.tests.factories import UserFactory

FR = {"HTTP_ACCEPT_LANGUAGE": "fr-FR,fr;q=0.9,en;q=0.5"}
PASSWORD = "a-very-decent-passphrase"


@pytest.mark.django_db
def test_switching_the_language_while_signed_in_stores_it(client):
    user = UserFactory()
    client.force_login(user)

    response = client.post("/i18n/setlang/", {"language": "fr", "next": "/pricing/"})

    assert response.status_code == 302 and response["Location"] == "/pricing/"
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "fr"  # the pages follow, as before
    user.refresh_from_db()
    assert user.language == "fr"

    client.post("/i18n/setlang/", {"language": "en", "next": "/"})
    user.refresh_from_db()
    assert user.language == "en"


@pytest.mark.django_db
def test_an_anonymous_switch_sets_the_cookie_and_stores_nothing(client):
    user = UserFactory()

    response = client.post("/i18n/setlang/", {"language": "fr", "next": "/"})

    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "fr"
    user.refresh_from_db()
    assert user.language == ""
    assert not User.objects.exclude(language="").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["xx", "de", ""])
def test_a_language_the_site_does_not_speak_is_not_stored(client, language):
    user = UserFactory(language="fr")
    client.force_login(user)

    response = client.post("/i18n/setlang/", {"language": language, "next": "/"})

    assert response.status_code == 302
    if language == "xx":  # Django's own check refuses it: no cookie either
        assert settings.LANGUAGE_COOKIE_NAME not in response.cookies
    user.refresh_from_db()
    assert user.language == "fr"


@pytest.mark.django_db
def test_a_get_changes_nothing(client):
    user = UserFactory()
    client.force_login(user)

    client.get("/i18n/setlang/", {"language": "fr", "next": "/"})

    user.refresh_from_db()
    assert user.language == ""


@pytest.mark.django_db
def test_the_switcher_form_posts_to_the_view_that_stores_the_language(client):
    page = client.get("/pricing/").content.decode()
    assert 'action="/i18n/setlang/"' in page


@pytest.mark.django_db
def test_sign_up_on_a_french_page_stores_french_and_confirms_the_address_in_french(
    client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/accounts/signup/",
            {"email": "amel@example.dz", "password1": PASSWORD, "password2": PASSWORD},
            **FR,
        )

    assert response.status_code == 302
    assert User.objects.get(email="amel@example.dz").language == "fr"
    assert len(mail.outbox) == 1
    assert mail.outbox[0].subject == "Confirmez votre adresse e-mail"
    assert "Confirmez que amel@example.dz est bien votre adresse" in mail.outbox[0].body


@pytest.mark.django_db
def test_sign_up_on_an_english_page_stores_nothing_and_mails_in_english(
    client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            "/accounts/signup/",
            {"email": "sam@example.com", "password1": PASSWORD, "password2": PASSWORD},
        )

    assert User.objects.get(email="sam@example.com").language == ""
    assert [message.subject for message in mail.outbox] == ["Confirm your email address"]
