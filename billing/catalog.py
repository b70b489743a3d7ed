"""The default plan catalogue (issue 3). Installed by ``manage.py seed_catalog`` and the
``0002_seed_catalog`` data migration; the admin owns the rows afterwards (seeding never
overwrites an existing plan or quota)."""

DEFAULT_CATALOG: list[dict] = [
    {
        "code": "free",
        "name": "Free",
        "price_minor": 0,
        "rate_limit_per_minute": 5,
        "routing_weights": {"groq": 100},
        "quotas": {"llm_tokens": 100_000, "emails": 0, "requests": 3},
        "sort_order": 0,
    },
    {
        "code": "student",
        "name": "Student",
        "price_minor": 1590,
        "price_dzd_minor": 159_000,  # 1 590 DZD, in centimes (Chargily Pay)
        "rate_limit_per_minute": 10,
        "routing_weights": {"groq": 85, "openrouter": 15},
        "quotas": {"llm_tokens": 2_000_000, "emails": 0, "requests": 200},
        "sort_order": 10,
    },
    {
        "code": "pro",
        "name": "Pro",
        "price_minor": 4900,
        "rate_limit_per_minute": 60,
        "routing_weights": {"openrouter": 100},
        "quotas": {"llm_tokens": 20_000_000, "emails": 1_000, "requests": 2_000},
        "sort_order": 20,
    },
    {
        "code": "discovery",
        "name": "Discovery",
        "price_minor": 2900,
        "rate_limit_per_minute": 60,
        "routing_weights": {"deepseek": 100},
        "quotas": {"llm_tokens": 1_000_000, "emails": 1_000, "requests": None},
        "sort_order": 30,
    },
    {
        "code": "business",
        "name": "Business",
        "price_minor": 9900,
        "rate_limit_per_minute": 120,
        "routing_weights": {"deepseek": 100},
        "quotas": {"llm_tokens": 10_000_000, "emails": 10_000, "requests": None},
        "sort_order": 40,
    },
    {
        "code": "scale",
        "name": "Scale",
        "price_minor": 29900,
        "rate_limit_per_minute": 300,
        "routing_weights": {"deepseek": 100},
        "quotas": {"llm_tokens": 100_000_000, "emails": 100_000, "requests": None},
        "sort_order": 50,
    },
]

# Meter -> period. ``requests`` counts messages per UTC day; the others per UTC month.
METER_PERIODS = {"llm_tokens": "month", "emails": "month", "requests": "day"}
DEFAULT_CURRENCY = "eur"
DEFAULT_MAX_TOKENS = 1024
DEFAULT_MAX_TOKENS_CAP = 8192
