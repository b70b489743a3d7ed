"""Every email goes out in its recipient's language (``User.language``; blank: English): one
message per language, each rendered under that language."""

from __future__ import annotations

import pytest
from django.core import mail
from django.utils import translation

from accounts.services import invitation_create
from accounts.services.verification import email_verification_send
from accounts.tests.factories import UserFactory, api_key_for, member_add, team_workspace
from core.mail import mail_send_localized
from credits.services.auto_top_up import auto_top_up_failed_email_send
from notifications.emails import threshold_email_send

pytestmark = pytest.mark.django_db


@pytest.fixture
def atelier():
    """A team workspace "Atelier": a French-speaking owner and an English-speaking accountant."""
    owner = UserFactory(email="amel@example.dz", name="Amel Haddad", language="fr")
    workspace = team_workspace(owner=owner, name="Atelier")
    accountant = member_add(workspace, role="billing", user=UserFactory(email="sam@example.com", language=""))
    return workspace, owner, accountant


def _by_recipient() -> dict[str, mail.EmailMessage]:
    assert all(len(message.to) == 1 for message in mail.outbox)
    return {message.to[0]: message for message in mail.outbox}


def test_a_threshold_email_goes_once_in_french_and_once_in_english(atelier):
    workspace, owner, accountant = atelier
    data = {"meter": "llm_tokens", "threshold": 80, "used": 80, "limit": 100}

    assert threshold_email_send(workspace_id=workspace.pk, event="quota.threshold_reached", data=data)

    assert len(mail.outbox) == 2
    sent = _by_recipient()
    french, english = sent[owner.email], sent[accountant.email]
    assert french.subject == "Tollgate : 80 % du quota de Jetons LLM de Atelier utilisés"
    assert french.body.startswith("Bonjour,\n")
    assert (
        "L’espace de travail « Atelier » a consommé ce mois-ci 80 des 100 jetons llm inclus dans son "
        "forfait (80 %)." in french.body
    )
    assert english.subject == "Tollgate: 80% of Atelier's LLM tokens quota used"
    assert english.body.startswith("Hello,\n")
    assert (
        'The workspace "Atelier" has used 80 of the 100 llm tokens included in its plan this month (80%).'
        in english.body
    )
    assert translation.get_language() == "en"  # the override ended with the send


def test_a_key_limit_email_names_the_unit_in_french(atelier):
    workspace, owner, _accountant = atelier
    key, _plaintext = api_key_for(workspace=workspace, name="ci key")
    data = {
        "api_key_id": key.pk,
        "unit": "requests",
        "window": "month",
        "threshold": 80,
        "used": 80,
        "limit": 100,
    }

    threshold_email_send(workspace_id=workspace.pk, event="key.limit_reached", data=data)

    french = _by_recipient()[owner.email]
    assert french.subject == "Tollgate : 80 % de la limite de requêtes de la clé « ci key » utilisés"
    english = _by_recipient()["sam@example.com"]
    assert english.subject == 'Tollgate: 80% of the requests limit of the key "ci key" used'
    assert "its limit of 100 requests per month (80%)" in english.body


def test_the_verification_email_speaks_the_users_language():
    user = UserFactory(email="karim@example.dz", name="Karim", language="fr", email_verified_at=None)

    email_verification_send(user=user)

    [message] = mail.outbox
    assert message.to == ["karim@example.dz"]
    assert message.subject == "Confirmez votre adresse e-mail"
    assert message.body.startswith("Bonjour Karim,\n")
    assert "Confirmez que karim@example.dz est bien votre adresse" in message.body


def test_an_invitation_speaks_the_inviters_language(atelier, django_capture_on_commit_callbacks):
    workspace, owner, _accountant = atelier

    with django_capture_on_commit_callbacks(execute=True):
        invitation_create(workspace=workspace, actor=owner, email="nadia@example.dz", role="developer")

    [message] = mail.outbox
    assert message.to == ["nadia@example.dz"]
    assert message.subject == "Amel Haddad vous invite à rejoindre Atelier sur Tollgate"
    assert (
        "Amel Haddad vous invite à rejoindre l’espace de travail « Atelier » sur Tollgate avec le rôle "
        "Développeur." in message.body
    )


def test_an_invitation_from_an_english_speaker_stays_english(atelier, django_capture_on_commit_callbacks):
    workspace, _owner, _accountant = atelier
    inviter = UserFactory(name="Sam Carter", language="")
    member_add(workspace, role="admin", user=inviter)

    with django_capture_on_commit_callbacks(execute=True):
        invitation_create(workspace=workspace, actor=inviter, email="lee@example.com", role="billing")

    [message] = mail.outbox
    assert message.subject == "Sam Carter invited you to Atelier on Tollgate"
    assert 'invited you to join the workspace "Atelier" on Tollgate as Billing.' in message.body


def test_the_auto_top_up_failure_email_in_french(atelier):
    workspace, owner, accountant = atelier

    auto_top_up_failed_email_send(workspace=workspace, reason="The card was not charged.")

    sent = _by_recipient()
    french = sent[owner.email]
    assert french.subject == "La recharge automatique Tollgate a échoué et a été désactivée dans Atelier"
    assert french.body.startswith("Bonjour,\n")
    assert (
        "La recharge automatique n’a pas pu acheter de crédits pour l’espace de travail « Atelier » : "
        "elle a donc été désactivée." in french.body
    )
    assert "The card was not charged." in french.body  # the stored reason, as recorded
    english = sent[accountant.email]
    assert english.subject == "Tollgate auto top-up failed and was turned off in Atelier"
    assert 'Auto top-up could not buy credits for the workspace "Atelier"' in english.body


def test_recipients_are_grouped_by_language_and_unknown_ones_read_english():
    calls = []

    def build():
        calls.append(translation.get_language())
        return translation.gettext("Tollgate: your payment failed"), "body"

    sent = mail_send_localized(
        recipients=[
            ("a@example.dz", "fr"),
            ("b@example.com", ""),
            ("c@example.dz", "fr"),
            ("d@example.de", "de"),
        ],
        build=build,
    )

    assert sent == 2 and sorted(calls) == ["en", "fr"]
    subjects = {message.subject: sorted(message.to) for message in mail.outbox}
    assert subjects == {
        "Tollgate : votre paiement a échoué": ["a@example.dz", "c@example.dz"],
        "Tollgate: your payment failed": ["b@example.com", "d@example.de"],
    }
