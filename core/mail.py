"""Emails in their recipient's language.

Most emails leave from Celery tasks, where no request has activated a language: the sender
passes each recipient with the language stored for them (``accounts.models.User.language``,
blank when unknown) and a ``build`` callable that renders the subject and the body. ``build`` runs
once per language under ``translation.override``, so its ``gettext`` calls, templates and
``money_format`` follow that language; one message goes to each language's recipients (they see
each other's address as before, within a language).
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.mail import send_mail
from django.utils import translation


def mail_language(language: str | None) -> str:
    """A stored language as one to render in: blank or unknown → English (``LANGUAGE_CODE``)."""
    known = {code for code, _name in settings.LANGUAGES}
    return language if language in known else settings.LANGUAGE_CODE


def mail_send_localized(*, recipients: list[tuple[str, str]], build: Callable[[], tuple[str, str]]) -> int:
    """Send ``build()``'s ``(subject, body)`` to ``recipients`` (``(email, language)`` pairs), one
    ``send_mail`` per language, rendered in it. Returns how many messages were sent."""
    groups: dict[str, list[str]] = {}
    for email, language in recipients:
        emails = groups.setdefault(mail_language(language), [])
        if email not in emails:
            emails.append(email)
    for language, emails in groups.items():
        with translation.override(language):
            subject, body = build()
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, emails)
    return len(groups)
