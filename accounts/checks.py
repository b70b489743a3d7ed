"""System check: encrypted provider secrets can be decrypted with the configured keys."""

from django.core.checks import Error, register


@register()
def encryption_roundtrip_check(app_configs, **kwargs):
    from .crypto import crypto_self_test

    problem = crypto_self_test()
    if problem:
        return [Error(f"Provider-key encryption is misconfigured: {problem}", id="accounts.E001")]
    return []
