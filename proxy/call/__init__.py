"""One proxied call, a module per step (docs/proxy.md, "The call, step by step").

``input`` (body, validation) → ``gate`` (key, plan, rate limit, admission) → ``prepare``
(provider key, price, budget and quota or credit holds) → ``upstream`` (attempts and fallback;
``stream`` relays SSE) → ``settle`` (charge what was used, log it). ``view`` is the DRF door
that runs them; ``detached`` keeps a call running when its client leaves.
"""
