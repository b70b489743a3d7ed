"""The providers Tollgate can call. A registry in code: add an entry to support a new one."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Provider:
    code: str
    name: str
    base_url: str  # API root (OpenAI-compatible but Anthropic); overridable by PROVIDER_<CODE>_BASE_URL
    kind: str = "llm"  # "llm" or "email"
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"


PROVIDERS: dict[str, Provider] = {
    p.code: p
    for p in (
        Provider("openai", "OpenAI", "https://api.openai.com/v1"),
        # Called natively (``POST {base}/messages``), not through its OpenAI-compatibility layer.
        Provider(
            "anthropic", "Anthropic", "https://api.anthropic.com/v1", auth_header="x-api-key", auth_scheme=""
        ),
        Provider("google", "Google Gemini", "https://generativelanguage.googleapis.com/v1beta/openai"),
        Provider("mistral", "Mistral", "https://api.mistral.ai/v1"),
        Provider("groq", "Groq", "https://api.groq.com/openai/v1"),
        Provider("openrouter", "OpenRouter", "https://openrouter.ai/api/v1"),
        Provider("deepseek", "DeepSeek", "https://api.deepseek.com"),
        Provider("instantly", "Instantly", "https://api.instantly.ai/api/v2", kind="email"),
    )
}

PROVIDER_CHOICES = [(p.code, p.name) for p in PROVIDERS.values()]


def provider_get(code: str) -> Provider | None:
    return PROVIDERS.get(code)
