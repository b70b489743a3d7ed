"""Money helpers. Amounts are integer minor units (as Stripe sends them); provider costs are
Decimal USD. Never floats."""

from decimal import ROUND_HALF_UP, Decimal

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
