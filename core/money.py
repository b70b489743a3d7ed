"""Money helpers. Amounts are integer minor units (as Stripe sends them); provider costs are
Decimal USD. Never floats."""

from decimal import ROUND_HALF_UP, Decimal

from django.utils import translation

ZERO_DECIMAL_CURRENCIES = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf",
                           "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}  # fmt: skip

USD_QUANT = Decimal("0.000001")


def minor_to_decimal(amount_minor: int, currency: str) -> Decimal:
    if currency.lower() in ZERO_DECIMAL_CURRENCIES:
        return Decimal(amount_minor)
    return Decimal(amount_minor) / Decimal(100)


def format_minor(amount_minor: int, currency: str) -> str:
    value = minor_to_decimal(amount_minor, currency)
    return f"{value:,.2f} {currency.upper()}"


def usd(value) -> Decimal:
    """Quantize a USD cost to 6 decimal places."""
    return Decimal(value).quantize(USD_QUANT, rounding=ROUND_HALF_UP)


# --- Money on pages, in the reader's language ------------------------------------------------
# APIs, CSV exports and messages to API clients keep ``format_minor`` ("12.50 EUR"). Pages print
# money with ``money_format`` (the ``money`` filter of core/templatetags/money.py):
#   French: "99,00 €", "1 590,00 DA" (narrow no-break space U+202F between thousands, a no-break
#           space U+00A0 before the symbol, CLDR's French symbols);
#   English: "99.00 EUR", "1,590.00 DZD" (the amount, then the ISO code, as on Tollgate's invoices,
#           CSV and API messages: unambiguous for dollars and dinars, and the same text a page
#           showed before translations).
# Zero-decimal currencies (ZERO_DECIMAL_CURRENCIES) print no decimals: "1,000 JPY", "1 000 JPY".

NARROW_NBSP = "\u202f"
NBSP = "\u00a0"
FRENCH_SYMBOLS = {"eur": "€", "dzd": "DA", "usd": "$US", "gbp": "£GB", "cad": "$CA", "chf": "CHF"}


def _language_code(language: str | None) -> str:
    """ "fr" or "en": the given language, else the active one (Django's), else English."""
    code = (language or translation.get_language() or "en").lower()
    return "fr" if code.split("-")[0] == "fr" else "en"


def money_major_format(
    value: Decimal, currency: str, *, language: str | None = None, places: int | None = None
) -> str:
    """``value`` major units of ``currency`` as the reader's language writes money. ``places``:
    decimals shown (default: the currency's, 0 or 2)."""
    if places is None:
        places = 0 if currency.lower() in ZERO_DECIMAL_CURRENCIES else 2
    quantum = Decimal(1).scaleb(-places)
    amount = Decimal(value).quantize(quantum, rounding=ROUND_HALF_UP)
    sign = "-" if amount < 0 else ""
    digits = f"{abs(amount):,.{places}f}"
    if _language_code(language) == "fr":
        digits = digits.replace(",", NARROW_NBSP).replace(".", ",")
        symbol = FRENCH_SYMBOLS.get(currency.lower(), currency.upper())
        return f"{sign}{digits}{NBSP}{symbol}"
    return f"{sign}{digits} {currency.upper()}"


def money_format(amount_minor: int, currency: str, *, language: str | None = None) -> str:
    """Integer minor units as money in the reader's language (``99,00 €`` / ``99.00 EUR``)."""
    return money_major_format(minor_to_decimal(int(amount_minor), currency), currency, language=language)
