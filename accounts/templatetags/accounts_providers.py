"""``{% provider_names as providers %}``: the providers Tollgate can call (``accounts.providers``),
by name, for pages of layers that may not import accounts — the landing page lives in ``core``."""

from django import template

from accounts.providers import PROVIDERS

register = template.Library()


@register.simple_tag
def provider_names() -> list[dict[str, str]]:
    """LLM providers first, then email, each ``{"code", "name", "kind"}``; registry order within."""
    providers = sorted(PROVIDERS.values(), key=lambda p: p.kind != "llm")
    return [{"code": p.code, "name": p.name, "kind": p.kind} for p in providers]
