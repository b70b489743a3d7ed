"""The model catalogue: the default price table (the one copy every other place reads) and routes,
and the writes that keep each worker's cached catalogue fresh."""

from __future__ import annotations

from decimal import Decimal

from .models import ModelPrice, ModelRoute
from .selectors import catalog_invalidate

# Public list prices, USD per million tokens (input, output). Groq's free tier and the sandbox
# cost the operator nothing.
DEFAULT_PRICES: list[tuple[str, str, str, str]] = [
    ("deepseek", "deepseek-chat", "0.28", "0.42"),
    ("deepseek", "deepseek-reasoner", "0.28", "0.42"),
    ("groq", "llama-3.3-70b-versatile", "0", "0"),
    ("groq", "llama-3.1-8b-instant", "0", "0"),
    ("openai", "gpt-4o", "2.50", "10.00"),
    ("openai", "gpt-4o-mini", "0.15", "0.60"),
    ("anthropic", "claude-sonnet-4-20250514", "3.00", "15.00"),
    ("anthropic", "claude-3-5-haiku-latest", "0.80", "4.00"),
    ("google", "gemini-2.0-flash", "0.10", "0.40"),
    ("mistral", "mistral-large-latest", "2.00", "6.00"),
    ("mistral", "mistral-small-latest", "0.10", "0.30"),
    ("openrouter", "openai/gpt-4o", "2.50", "10.00"),
    ("openrouter", "openai/gpt-4o-mini", "0.15", "0.60"),
    ("openrouter", "anthropic/claude-sonnet-4", "3.00", "15.00"),
    ("openrouter", "meta-llama/llama-3.3-70b-instruct", "0.13", "0.40"),
    ("sandbox", "sandbox-chat", "0", "0"),
    # Embeddings: input tokens only.
    ("openai", "text-embedding-3-small", "0.02", "0"),
    ("openai", "text-embedding-3-large", "0.13", "0"),
    ("mistral", "mistral-embed", "0.10", "0"),
    ("google", "gemini-embedding-001", "0.15", "0"),
    ("openrouter", "openai/text-embedding-3-small", "0.02", "0"),
    ("sandbox", "sandbox-embed", "0", "0"),
]

# The embedding models of the routes below: any keyed provider's, whatever the plan's chat mix.
EMBEDDING_MODELS = frozenset(
    {
        "text-embedding-3-small",
        "openai/text-embedding-3-small",
        "text-embedding-3-large",
        "mistral-embed",
        "gemini-embedding-001",
        "sandbox-embed",
    }
)

# (requested model, provider, upstream model); "*" is the provider's default.
DEFAULT_ROUTES: list[tuple[str, str, str]] = [
    ("gpt-4o", "groq", "llama-3.3-70b-versatile"),
    ("gpt-4o", "openrouter", "openai/gpt-4o"),
    ("gpt-4o", "openai", "gpt-4o"),
    ("gpt-4o", "deepseek", "deepseek-chat"),
    ("gpt-4o-mini", "groq", "llama-3.1-8b-instant"),
    ("gpt-4o-mini", "openrouter", "openai/gpt-4o-mini"),
    ("gpt-4o-mini", "deepseek", "deepseek-chat"),
    ("claude-sonnet-4", "groq", "llama-3.3-70b-versatile"),
    ("claude-sonnet-4", "openrouter", "anthropic/claude-sonnet-4"),
    ("claude-sonnet-4", "anthropic", "claude-sonnet-4-20250514"),
    ("claude-sonnet-4", "deepseek", "deepseek-chat"),
    ("deepseek-chat", "groq", "llama-3.3-70b-versatile"),
    ("deepseek-chat", "openrouter", "openai/gpt-4o-mini"),
    ("*", "groq", "llama-3.3-70b-versatile"),
    ("*", "openrouter", "openai/gpt-4o-mini"),
    ("*", "deepseek", "deepseek-chat"),
    ("*", "openai", "gpt-4o-mini"),
    ("*", "anthropic", "claude-3-5-haiku-latest"),
    ("*", "google", "gemini-2.0-flash"),
    ("*", "mistral", "mistral-small-latest"),
    # Embedding models: served only through these exact routes (proxy.call.embeddings), never a
    # "*" default; the provider serving the name itself is tried first.
    ("text-embedding-3-small", "openai", "text-embedding-3-small"),
    ("text-embedding-3-small", "openrouter", "openai/text-embedding-3-small"),
    ("openai/text-embedding-3-small", "openrouter", "openai/text-embedding-3-small"),
    ("text-embedding-3-large", "openai", "text-embedding-3-large"),
    ("mistral-embed", "mistral", "mistral-embed"),
    ("gemini-embedding-001", "google", "gemini-embedding-001"),
    ("sandbox-embed", "sandbox", "sandbox-embed"),
]


def proxy_catalog_seed() -> tuple[int, int]:
    """Install the default prices and routes; never overwrites an operator's edit. Idempotent."""
    created_prices = 0
    for provider, model, inp, out in DEFAULT_PRICES:
        _, created = ModelPrice.objects.get_or_create(
            provider=provider,
            model=model,
            defaults={"input_usd_per_mtok": Decimal(inp), "output_usd_per_mtok": Decimal(out)},
        )
        created_prices += int(created)
    created_routes = 0
    for requested, provider, upstream in DEFAULT_ROUTES:
        _, created = ModelRoute.objects.get_or_create(
            requested_model=requested, provider=provider, defaults={"upstream_model": upstream}
        )
        created_routes += int(created)
    catalog_invalidate()
    return created_prices, created_routes


def model_price_save(*, price: ModelPrice) -> ModelPrice:
    """Admin edits go through here so every worker's cached catalogue refreshes on this one."""
    price.full_clean()
    price.save()
    catalog_invalidate()
    return price


def model_route_save(*, route: ModelRoute) -> ModelRoute:
    route.full_clean()
    route.save()
    catalog_invalidate()
    return route
