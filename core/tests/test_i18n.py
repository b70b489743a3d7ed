"""French and English pages: the language follows the switcher's cookie, else Accept-Language,
else English; the French catalogue is complete and up to date; money and dates follow the
language; APIs stay in English whatever the browser asks."""

import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import translation

from accounts.tests.factories import UserFactory, team_workspace
from billing.services import plan_catalog_seed
from core.money import format_minor, money_format
from core.templatetags.when import when_html

PO_PATH = Path(settings.BASE_DIR) / "locale" / "fr" / "LC_MESSAGES" / "django.po"
# The one command that refreshes the catalogue (docs/development.md, "Translations"; `make messages`).
MAKEMESSAGES = [
    "makemessages", "-l", "fr", "--add-location", "file", "--no-obsolete",
    "-i", ".venv", "-i", ".local", "-i", "staticfiles", "-i", "static", "-i", "bench",
    "-i", "test-artifacts", "-i", "node_modules", "-i", "tests",
]  # fmt: skip
FR = {"HTTP_ACCEPT_LANGUAGE": "fr-FR,fr;q=0.9,en;q=0.5"}
NNBSP, NBSP = "\u202f", "\u00a0"


# --- the catalogue ----------------------------------------------------------------------------


_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), text[1:-1])


def po_entries(path: Path) -> list[dict]:
    """The entries of a .po file: msgctxt, msgid, msgid_plural, msgstr (a list), flags."""
    entries, entry, key = [], None, None
    for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        if not line.strip():
            if entry:
                entries.append(entry)
            entry, key = None, None
            continue
        entry = entry or {"flags": set(), "msgstr": []}
        if line.startswith("#,"):
            entry["flags"] |= {flag.strip() for flag in line[2:].split(",")}
        elif line.startswith("#"):
            continue
        elif match := re.match(r"(msgctxt|msgid_plural|msgid|msgstr(?:\[\d\])?) (\".*\")$", line):
            key = match.group(1)
            if key.startswith("msgstr"):
                entry["msgstr"].append(_unquote(match.group(2)))
            else:
                entry[key] = _unquote(match.group(2))
        else:
            assert line.startswith('"'), f"unexpected line in {path.name}: {line!r}"
            if key.startswith("msgstr"):
                entry["msgstr"][-1] += _unquote(line)
            else:
                entry[key] += _unquote(line)
    return entries


def _msgids(path: Path) -> set[tuple[str, str]]:
    return {(e.get("msgctxt", ""), e["msgid"]) for e in po_entries(path) if e["msgid"]}


def test_every_msgid_of_the_french_catalogue_has_a_translation():
    entries = po_entries(PO_PATH)
    header = entries[0]
    assert header["msgid"] == "" and "fuzzy" not in header["flags"]
    assert "Language: fr\n" in header["msgstr"][0]
    assert len(entries) > 400  # every page string, not a stub
    untranslated = [e["msgid"] for e in entries[1:] if not all(s.strip() for s in e["msgstr"])]
    fuzzy = [e["msgid"] for e in entries[1:] if "fuzzy" in e["flags"]]
    plural_short = [e["msgid"] for e in entries[1:] if "msgid_plural" in e and len(e["msgstr"]) != 2]
    assert untranslated == [] and fuzzy == [] and plural_short == []
    for entry in entries[1:]:  # the placeholders survive translation
        for text in entry["msgstr"]:
            wanted = set(re.findall(r"%\(\w+\)[sd]", entry["msgid"] + entry.get("msgid_plural", "")))
            assert set(re.findall(r"%\(\w+\)[sd]", text)) <= wanted, entry["msgid"]


def test_the_compiled_catalogue_is_committed_next_to_the_po_file():
    mo = PO_PATH.with_suffix(".mo")
    assert mo.exists() and mo.stat().st_size > 10_000
    with translation.override("fr"):
        assert translation.gettext("Pricing") == "Tarifs"


@pytest.mark.gettext
def test_the_catalogue_holds_every_string_the_templates_and_code_mark(tmp_path):
    """makemessages over a copy of the tree: a marked string missing from the committed .po
    (someone forgot `makemessages`) fails here, with the strings to add."""
    root = Path(settings.BASE_DIR)
    copy = tmp_path / "tree"
    shutil.copytree(
        root,
        copy,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            ".local",
            "staticfiles",
            "test-artifacts",
            "bench",
            "node_modules",
            "__pycache__",
            ".ruff_cache",
            ".hypothesis",
            ".import_linter_cache",
            "*.mo",
            "static",
        ),
    )
    command = [sys.executable, "manage.py", *MAKEMESSAGES]
    result = subprocess.run(command, cwd=copy, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    fresh, committed = copy / "locale/fr/LC_MESSAGES/django.po", PO_PATH
    missing = _msgids(fresh) - _msgids(committed)
    stale = _msgids(committed) - _msgids(fresh)
    assert not missing, f"run `make messages` and translate: {sorted(missing)[:20]}"
    assert not stale, f"run `make messages` (obsolete entries): {sorted(stale)[:20]}"


# --- money and dates --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minor", "currency", "french", "english"),
    [
        (9_900, "eur", f"99,00{NBSP}€", "99.00 EUR"),
        (159_000, "dzd", f"1{NNBSP}590,00{NBSP}DA", "1,590.00 DZD"),
        (123_456_789, "eur", f"1{NNBSP}234{NNBSP}567,89{NBSP}€", "1,234,567.89 EUR"),
        (1_250, "usd", f"12,50{NBSP}$US", "12.50 USD"),
        (-1_250, "usd", f"-12,50{NBSP}$US", "-12.50 USD"),
        (0, "usd", f"0,00{NBSP}$US", "0.00 USD"),
        (100_000, "jpy", f"100{NNBSP}000{NBSP}JPY", "100,000 JPY"),  # zero-decimal: no cents
        (5, "jpy", f"5{NBSP}JPY", "5 JPY"),
        (1_999, "chf", f"19,99{NBSP}CHF", "19.99 CHF"),
    ],
)
def test_money_in_each_language(minor, currency, french, english):
    assert money_format(minor, currency, language="fr") == french
    assert money_format(minor, currency, language="en") == english
    with translation.override("fr-fr"):
        assert money_format(minor, currency) == french  # the active language
    with translation.override("en"):
        assert money_format(minor, currency) == english


def test_api_money_text_does_not_follow_the_language():
    with translation.override("fr"):
        assert format_minor(1_250, "eur") == "12.50 EUR"


def test_the_money_filters_in_a_template():
    from django.template import Context, Template  # noqa: PLC0415 (template engine set up by now)

    template = Template(
        '{% load money %}{{ 159000|money:"dzd" }}|{{ -350|money:"eur" }}|{{ price|money_major:"eur" }}'
    )
    from decimal import Decimal  # noqa: PLC0415

    with translation.override("fr"):
        text = template.render(Context({"price": Decimal("0.158")}))
    assert text == f"1{NNBSP}590,00{NBSP}DA|-3,50{NBSP}€|0,158{NBSP}€"
    with translation.override("en"):
        assert template.render(Context({"price": Decimal("0.10")})) == "1,590.00 DZD|-3.50 EUR|0.10 EUR"


def test_dates_and_relative_times_follow_the_language():
    now = datetime(2026, 12, 6, 13, 58, 7, tzinfo=UTC)
    with translation.override("fr"):
        assert ">il y a 5 min<" in when_html(now - timedelta(minutes=5), now=now)
        assert ">à l’instant<" in when_html(now, now=now)
        old = when_html(now - timedelta(days=3), now=now)
        assert ">3 déc. 2026, 13:58<" in old and 'title="jeudi 3 déc. 2026, 13:58:07 (UTC)"' in old
    with translation.override("en"):
        assert ">5 min ago<" in when_html(now - timedelta(minutes=5), now=now)
        assert ">3 Dec 2026, 13:58<" in when_html(now - timedelta(days=3), now=now)


# --- pages ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_pages_speak_french_to_a_french_browser(client):
    plan_catalog_seed()
    home = client.get("/", **FR)
    html = home.content.decode()
    assert home["Content-Language"] == "fr" and "Accept-Language" in home["Vary"]
    assert '<html lang="fr">' in html
    assert "Une seule clé pour tous les fournisseurs d’IA." in html
    assert f"99,00{NBSP}€" in html and f"1{NNBSP}590,00{NBSP}DA" in html

    login = client.get("/accounts/login/", **FR).content.decode()
    assert "<h1>Se connecter</h1>" in login and "Mot de passe oublié ?" in login

    pricing = client.get("/pricing/", **FR).content.decode()
    assert "Comparer les forfaits" in pricing and f"99,00{NBSP}€" in pricing and "par mois" in pricing


@pytest.mark.django_db
def test_the_members_page_in_french(client):
    owner = UserFactory()
    workspace = team_workspace(owner=owner, name="Équipe")
    client.force_login(owner)
    html = client.get(f"/workspaces/{workspace.pk}/members/", **FR).content.decode()
    assert "Inviter quelqu" in html and "Invitations en attente" in html
    assert '<option value="developer"' in html and ">Développeur</option>" in html
    assert "Invite someone" not in html


@pytest.mark.django_db
def test_english_without_accept_language_and_for_other_languages(client):
    plan_catalog_seed()
    for headers in ({}, {"HTTP_ACCEPT_LANGUAGE": "de-DE,de;q=0.9"}):
        response = client.get("/pricing/", **headers)
        html = response.content.decode()
        assert response["Content-Language"] == "en"
        assert "Compare plans" in html and "99.00 EUR" in html and '<html lang="en">' in html


@pytest.mark.django_db
def test_the_switcher_sets_the_language_over_the_browsers(client):
    page = client.get("/pricing/", **FR).content.decode()
    switcher = page.split('class="inline language-switcher"', 1)[1].split("</form>", 1)[0]
    assert 'action="/i18n/setlang/"' in page and '<label for="language-switcher">Langue</label>' in switcher
    assert 'name="next" value="/pricing/"' in switcher and 'value="fr" lang="fr" selected' in switcher

    response = client.post("/i18n/setlang/", {"language": "en", "next": "/pricing/"}, **FR)
    assert response.status_code == 302 and response["Location"] == "/pricing/"
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "en"
    assert "Compare plans" in client.get("/pricing/", **FR).content.decode()  # the choice wins

    client.post("/i18n/setlang/", {"language": "fr", "next": "/"})
    assert "Comparer les forfaits" in client.get("/pricing/").content.decode()


@pytest.mark.django_db
def test_an_off_site_next_is_not_followed(client):
    response = client.post("/i18n/setlang/", {"language": "fr", "next": "https://evil.example/"})
    assert response.status_code == 302 and response["Location"] == "/"


@pytest.mark.django_db
def test_api_errors_stay_in_english_for_a_french_browser(client):
    """DRF's own messages are translated by Django's catalogues: the API never activates French."""
    page = client.get("/pricing/", **FR)  # the same thread served a French page just before
    assert page["Content-Language"] == "fr"
    response = client.get("/api/credits/balance", **FR)
    body = response.json()
    assert response.status_code in (401, 403)
    assert body["error"]["message"] == "Authentication credentials were not provided."
    assert "Content-Language" not in response and "Accept-Language" not in response.get("Vary", "")

    missing = client.get("/api/no-such-thing", **FR)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert "Content-Language" not in missing

    proxied = client.post("/api/proxy/v1/chat/completions", {}, content_type="application/json", **FR)
    assert proxied.status_code == 401 and proxied.json()["error"]["code"] == "invalid_api_key"
    assert "Content-Language" not in proxied
