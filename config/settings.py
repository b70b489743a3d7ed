"""Tollgate settings.

Every value is read from the environment (django-environ) with an embedded default that is
safe for local use: sandbox provider, simulated checkout, console email. The two servers have no
default here: PostgreSQL (``DATABASE_URL``) and Redis/Valkey (``REDIS_URL``) are always real;
`make run` and `make test` start embedded ones and set both (devservers/). Production mode
(``DJANGO_ENV=production`` or ``DEBUG=False``) refuses to start without real secrets and
allowed hosts.
"""

from decimal import Decimal
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DJANGO_ENV = env.str("DJANGO_ENV", default="development")
DEBUG = env.bool("DEBUG", default=DJANGO_ENV != "production")
IS_PRODUCTION = DJANGO_ENV == "production" or not DEBUG
# The test suite's settings (config/settings_test.py) turn this on: eager Celery, no DB pool,
# fast hasher.
TESTING = False

# A fixed key is only acceptable for local development; production must provide one.
_DEV_SECRET_KEY = "django-insecure-local-development-only-key-do-not-use-in-production"
SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET_KEY if not IS_PRODUCTION else "")
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])
# django-fernet-encrypted-fields derives its Fernet keys from SECRET_KEY + SALT_KEY.
# The first salt encrypts; the others still decrypt (rotation).
SALT_KEY = env.list("SALT_KEY", default=["local-development-salt"] if not IS_PRODUCTION else [])
ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"] if not IS_PRODUCTION else []
)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Absolute links (emails, checkout return, key reveal, /docs/). Unset: the local server on PORT
# (`make run PORT=8123`).
PORT = env.int("PORT", default=8000)
SITE_URL = env.str("SITE_URL", default=f"http://127.0.0.1:{PORT}").rstrip("/")

if IS_PRODUCTION:
    _missing = [
        name
        for name, value in (
            ("SECRET_KEY", SECRET_KEY if SECRET_KEY != _DEV_SECRET_KEY else ""),
            ("SALT_KEY", SALT_KEY),
            ("ALLOWED_HOSTS", ALLOWED_HOSTS),
        )
        if not value
    ]
    if _missing:
        raise ImproperlyConfigured(
            "Production mode needs these environment variables: " + ", ".join(_missing)
        )

INSTALLED_APPS = [
    # First, so its `runserver` (uvicorn, ASGI, as `make run`) replaces Django's WSGI one.
    "devservers",
    "dashboards.admin_config.TollgateAdminConfig",  # django.contrib.admin with our site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "servestatic",  # checks the SERVESTATIC_* settings at start-up
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc served from our static files, no CDN
    "django_celery_beat",
    "django_ratelimit",
    "core",
    "accounts",
    "billing",
    "notifications",
    "credits",
    "proxy",
    "organizations",
    "dashboards",
]

MIDDLEWARE = [
    "core.middleware.RequestIdMiddleware",
    "core.request_metrics.RequestMetricsMiddleware",  # request latency histograms (/metrics)
    "core.middleware.ApiFastPathMiddleware",  # proxy API: skips the rest (see its docstring)
    "django.middleware.security.SecurityMiddleware",
    "core.middleware.StaticFilesMiddleware",  # servestatic: async, like the whole chain
    "core.compression.PageGZipMiddleware",  # pages only: not the proxy, streams or no-store
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Django's LocaleMiddleware, for pages only: APIs and the proxy stay in English (core/i18n.py).
    "core.i18n.PageLocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "core.timezones.TimeZoneMiddleware",  # pages in the viewer's zone; APIs stay UTC
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "core.context_processors.site",
                "credits.context_processors.credits_badge",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# PostgreSQL only (psycopg 3, server-side pool). No default: `make run`, `make test` and
# `python -m devservers -- <command>` start the embedded server (.local/postgres) and set it.
_RUN_EMBEDDED = (
    "`make run` and `make test` start embedded servers and set it; for any other command use "
    "`.venv/bin/python -m devservers -- <command>` (docs/development.md), or point it at your own "
    "server"
)
_database_url = env.str("DATABASE_URL", default="")
if not _database_url:
    raise ImproperlyConfigured(f"DATABASE_URL is not set. {_RUN_EMBEDDED} (postgres://…).")
DATABASES = {"default": env.db_url_config(_database_url)}  # not a setting: its password is unmasked
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must name a PostgreSQL database (postgres://…).")
DATABASES["default"].setdefault("OPTIONS", {})
if env.bool("DATABASE_POOL", default=True):
    DATABASES["default"]["OPTIONS"]["pool"] = {
        "min_size": env.int("DATABASE_POOL_MIN", default=2),
        "max_size": env.int("DATABASE_POOL_MAX", default=20),
        "timeout": env.int("DATABASE_POOL_TIMEOUT", default=10),
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
DATABASES["default"]["TEST"] = {"NAME": env.str("DATABASE_TEST_NAME", default=None)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (rate limits, budget counters, key revocation, the gate) -------------------------
# Redis or Valkey, always (the embedded Valkey under `make run` / `make test`); no local fallback.
REDIS_URL = env.str("REDIS_URL", default="")
if not REDIS_URL:
    raise ImproperlyConfigured(f"REDIS_URL is not set. {_RUN_EMBEDDED} (redis://…).")
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="tollgate"),
        # Every key also carries this database's identity (core/cache_identity.py).
        "KEY_FUNCTION": "core.cache_identity.make_key",
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SOCKET_CONNECT_TIMEOUT": 2,
            "SOCKET_TIMEOUT": 2,
        },
    }
}
RATELIMIT_USE_CACHE = "default"
RATELIMIT_ENABLE = env.bool("RATELIMIT_ENABLE", default=True)

# --- Auth ------------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/dashboard/"
LOGOUT_REDIRECT_URL = "/"

# --- i18n / time -----------------------------------------------------------------------------
# Pages in English or French (core/i18n.py picks: the switcher's cookie, else Accept-Language,
# else English); no language prefix in URLs. The catalogue: locale/ (docs/development.md,
# "Translations"). APIs and the proxy always answer in English.
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("fr", "Français")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# The one date format of the pages ("6 Dec 2026", "6 Dec 2026, 14:05"), in the viewer's zone
# (core.timezones). Printed through {{ value|when }} (core/templatetags/when.py), which reads
# these settings directly: Django's own |date would prefer the active language's formats.
DATE_FORMAT = "j M Y"
DATETIME_FORMAT = "j M Y, H:i"
SHORT_DATETIME_FORMAT = "j M Y, H:i"

# --- Static ----------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

# --- Email -----------------------------------------------------------------------------------
# EMAIL_URL (smtp+tls://user:password@host:587) configures SMTP. Unset, mail is printed by the
# console backend: password-reset links in the log. Production refuses that (check accounts.E002)
# unless EMAIL_ALLOW_CONSOLE says the log is meant to carry them.
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
if env.str("EMAIL_URL", default=""):
    vars().update(env.email_url("EMAIL_URL"))
EMAIL_ALLOW_CONSOLE = env.bool("EMAIL_ALLOW_CONSOLE", default=False)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Tollgate <billing@localhost>")
# "mandatory": an unconfirmed address signs in but its keys answer 403 email_unverified (an
# accepted invitation confirms the address it was mailed to); "optional" only reminds (``make run``).
# accounts.services.verification
EMAIL_VERIFICATION = env.str("EMAIL_VERIFICATION", default="mandatory")
EMAIL_VERIFICATION_MAX_AGE_SECONDS = env.int("EMAIL_VERIFICATION_MAX_AGE_SECONDS", default=7 * 24 * 3600)

# --- DRF -------------------------------------------------------------------------------------
# Reverse proxies in front of the app that append to X-Forwarded-For. 0 (default): the header is
# ignored and the client is REMOTE_ADDR (core/clientaddr.py); DRF's own NUM_PROXIES follows it.
NUM_PROXIES = env.int("NUM_PROXIES", default=0)
if NUM_PROXIES < 0:
    raise ImproperlyConfigured("NUM_PROXIES must be 0 or more.")
REST_FRAMEWORK = {
    "NUM_PROXIES": NUM_PROXIES,
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["core.renderers.JSONRenderer"],  # decimals as plain numbers
    "DEFAULT_PARSER_CLASSES": ["core.jsonbody.StrictJSONParser"],
    "EXCEPTION_HANDLER": "core.exceptions.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Tollgate API",
    "DESCRIPTION": "Billing portal and metered proxy for AI and email providers.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},  # no badge from swagger.io
}

# --- Celery ----------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None
# Tasks go to the broker for a worker; `make run` sets CELERY_TASK_ALWAYS_EAGER=true (tasks
# inline, no worker to start), and so do the test settings.
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

# --- Security (production) ------------------------------------------------------------------
if IS_PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
    X_FRAME_OPTIONS = "DENY"
    SECURE_REDIRECT_EXEMPT = [r"^health$", r"^metrics$"]
SESSION_COOKIE_HTTPONLY = True

# --- Logging: one JSON object per line in production, with the request id -------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_JSON = env.bool("LOG_JSON", default=IS_PRODUCTION)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "core.logging.RequestIdFilter"}},
    "formatters": {
        "json": {"()": "core.logging.JsonFormatter"},
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": "json" if LOG_JSON else "plain",
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "tollgate": {"level": LOG_LEVEL},
        # One INFO line per HTTP request made: noise, and a measurable cost per proxied call.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

# =============================================================================================
# Product settings
# =============================================================================================

# Accounts: customer API keys (proxy keys) and provider keys.
PROXY_KEY_PREFIX = env.str("PROXY_KEY_PREFIX", default="sk_agentai_")
API_KEYS_PER_USER_LIMIT = env.int("API_KEYS_PER_USER_LIMIT", default=20)
API_KEY_ROTATE_MAX_GRACE_SECONDS = 48 * 3600
# HMAC key(s) for provider-secret fingerprints (first signs, all verify). Unset: derived from
# each SALT_KEY, so it survives a SECRET_KEY rotation. See docs/accounts.md.
FIELD_FINGERPRINT_KEY = env.list("FIELD_FINGERPRINT_KEY", default=[])
# --- Auth rate limits: every credential door (accounts/credential_limits.py) ---------------
# Attempts per client address at log-in (page, admin, API token), sign-up (page, API), password
# reset (request, link) and password change; and per account named in the attempt (its email).
AUTH_RATE_LIMIT = env.str("AUTH_RATE_LIMIT", default="10/m")
AUTH_ACCOUNT_RATE_LIMIT = env.str("AUTH_ACCOUNT_RATE_LIMIT", default=AUTH_RATE_LIMIT)
# Refused well-formed API keys allowed per client address and minute; past it the address's keys
# are answered 429 without a database lookup (accounts/authentication.py). 0: no limit.
AUTH_FAILURES_PER_MINUTE = env.int("AUTH_FAILURES_PER_MINUTE", default=30)

# Billing: Stripe (unset = simulated checkout when DEBUG is on).
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_PUBLISHABLE_KEY = env.str("STRIPE_PUBLISHABLE_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="whsec_local_simulated_checkout")
STRIPE_API_VERSION = env.str("STRIPE_API_VERSION", default="2026-08-26.dahlia")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")
STRIPE_WEBHOOK_TOLERANCE_SECONDS = 300
CHECKOUT_REDIRECT_HOSTS = env.list("CHECKOUT_REDIRECT_HOSTS", default=["127.0.0.1", "localhost"])
SIMULATED_CHECKOUT_ENABLED = DEBUG and not STRIPE_SECRET_KEY
DEFAULT_PLAN_CODE = env.str("DEFAULT_PLAN_CODE", default="free")

# Billing: Chargily Pay V2 (DZD). Unset CHARGILY_API_KEY = simulated Chargily checkout (DEBUG only).
CHARGILY_MODE = env.str("CHARGILY_MODE", default="test")  # "test" | "live": selects the API base
CHARGILY_API_KEY = env.str("CHARGILY_API_KEY", default="")  # public key; set = real Chargily
# Bearer for API calls and the webhook HMAC key; the local default exists only when DEBUG.
CHARGILY_SECRET_KEY = env.str(
    "CHARGILY_SECRET_KEY", default="chargily_local_simulated_checkout" if DEBUG else ""
)
CHARGILY_API_BASE = env.str("CHARGILY_API_BASE", default="")  # override of the mode's base URL
CHARGILY_TIMEOUT_SECONDS = env.float("CHARGILY_TIMEOUT_SECONDS", default=15.0)
CHARGILY_RENEWAL_REMINDER_DAYS = env.int("CHARGILY_RENEWAL_REMINDER_DAYS", default=3)

# Proxy.
PROXY_UPSTREAM_TIMEOUT = env.float("PROXY_UPSTREAM_TIMEOUT", default=120.0)
PROXY_CONNECT_TIMEOUT = env.float("PROXY_CONNECT_TIMEOUT", default=5.0)
PROXY_MAX_BODY_BYTES = env.int("PROXY_MAX_BODY_BYTES", default=1024 * 1024)
DAILY_BUDGET_USD = Decimal(env.str("DAILY_BUDGET_USD", default="50"))
BYOK_COUNTS_AGAINST_QUOTA = env.bool("BYOK_COUNTS_AGAINST_QUOTA", default=False)
SANDBOX_PROVIDER_ENABLED = env.bool("SANDBOX_PROVIDER_ENABLED", default=DEBUG)
INSTANTLY_API_URL = env.str("INSTANTLY_API_URL", default="https://api.instantly.ai/api/v2")
# Per-provider base URL overrides (tests, benchmarks, self-hosted gateways); empty = registry default.
PROVIDER_BASE_URLS = {
    code: env.str(f"PROVIDER_{code.upper()}_BASE_URL", default="")
    for code in ("openai", "anthropic", "google", "mistral", "groq", "openrouter", "deepseek")
}
PROXY_ROUTER_SEED = env.int("PROXY_ROUTER_SEED", default=None)  # fixed seed = deterministic routing
# Plans (codes) whose tier mix deliberately serves every requested model: a name no provider of
# the plan knows is served by each provider's "*" route instead of answering 404 model_not_found.
PROXY_ANY_MODEL_PLANS = env.list("PROXY_ANY_MODEL_PLANS", default=["free", "student", "pro"])
PROXY_DEFAULT_MAX_TOKENS = env.int("PROXY_DEFAULT_MAX_TOKENS", default=1024)  # when max_tokens absent
PROXY_MAX_TOKENS_CAP = env.int("PROXY_MAX_TOKENS_CAP", default=32768)  # unless the plan sets one
PROXY_COOLDOWN_FAILURES = env.int("PROXY_COOLDOWN_FAILURES", default=3)
PROXY_COOLDOWN_SECONDS = env.int("PROXY_COOLDOWN_SECONDS", default=60)
PROXY_HTTP_MAX_CONNECTIONS = env.int("PROXY_HTTP_MAX_CONNECTIONS", default=1000)
# Hot-path quota transactions commit asynchronously (PostgreSQL): a server crash may lose the last
# few hundred ms of them — an under-charge, never an overspend (docs/how-a-call-flows.md).
PROXY_SYNCHRONOUS_COMMIT = env.bool("PROXY_SYNCHRONOUS_COMMIT", default=False)
# Async API views under these URL prefixes skip the session/CSRF/static middleware stack.
API_FAST_PATH_PREFIXES = env.list("API_FAST_PATH_PREFIXES", default=["/api/proxy/", "/api/v2/chat"])
# Calls per worker between arrival and reserve at one time, first come first admitted
# (proxy/call/gate.py); 0: no limit.
PROXY_ADMISSION_CONCURRENCY = env.int("PROXY_ADMISSION_CONCURRENCY", default=32)

# Browsers calling the proxy directly (CORS), off by default: a key in a web page is a key anyone
# can copy, so keys belong on servers. An operator who fronts a browser app with short-lived,
# tightly limited keys lists its origins here; only /api/proxy/ answers cross-origin requests.
PROXY_CORS_ALLOWED_ORIGINS = env.list("PROXY_CORS_ALLOWED_ORIGINS", default=[])
CORS_ALLOWED_ORIGINS = PROXY_CORS_ALLOWED_ORIGINS
CORS_URLS_REGEX = r"^/api/proxy/.*$"
CORS_ALLOW_HEADERS = (
    "accept",
    "authorization",
    "content-type",
    "x-api-key",
    "x-request-id",
    "idempotency-key",
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
    "openai-organization",
    "openai-project",
    "openai-beta",
    "x-stainless-arch",
    "x-stainless-lang",
    "x-stainless-os",
    "x-stainless-package-version",
    "x-stainless-retry-count",
    "x-stainless-runtime",
    "x-stainless-runtime-version",
    "x-stainless-timeout",
)
CORS_EXPOSE_HEADERS = (
    "retry-after",
    "x-request-id",
    "x-should-retry",
    "x-tollgate-served-model",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
)
CORS_PREFLIGHT_MAX_AGE = 600
if CORS_ALLOWED_ORIGINS:  # no origin listed: not even a header check on the hot path
    INSTALLED_APPS.append("corsheaders")
    MIDDLEWARE.insert(1, "corsheaders.middleware.CorsMiddleware")  # before the proxy's fast path
# A stopping worker finishes the proxied calls still running (clients gone) for at most this
# long (core/lifecycle.py); keep it below the server's graceful timeout (gunicorn: 30 s).
WORKER_SHUTDOWN_DRAIN_SECONDS = env.int("WORKER_SHUTDOWN_DRAIN_SECONDS", default=25)
# The call path's async PostgreSQL pool and Redis client (core/fastio.py), per worker process.
PROXY_FAST_LANE_DB_CONNECTIONS = env.int("PROXY_FAST_LANE_DB_CONNECTIONS", default=8)  # per process
# Spare quota reservations a fast-lane worker reserves with a call's own, in one statement, for its
# next calls of that workspace and size (billing/quota_pool.py); 0: every call reserves alone.
PROXY_QUOTA_BATCH = env.int("PROXY_QUOTA_BATCH", default=8)
PROXY_QUOTA_BATCH_IDLE = env.float("PROXY_QUOTA_BATCH_IDLE", default=1.0)  # s without a taker: released
PROXY_QUOTA_BATCH_MAX_AGE = env.float("PROXY_QUOTA_BATCH_MAX_AGE", default=5.0)  # s: never handed out later

# Credits.
CREDITS_LOW_THRESHOLD = env.int("CREDITS_LOW_THRESHOLD", default=20)

# Outgoing webhooks (notifications): true lets endpoints target private, loopback and link-local
# addresses (local development and tests only; an SSRF hole in production).
WEBHOOK_ALLOW_PRIVATE_TARGETS = env.bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", default=False)

# Organizations (self-hosted VaultAI instances).
BILLING_API_TOKEN = env.list("BILLING_API_TOKEN", default=[])
STRIPE_METER_EVENT_NAME = env.str("STRIPE_METER_EVENT_NAME", default="vaultai_active_users")
STRIPE_PRICE_VAULTAI_MANAGED_CLOUD = env.str("STRIPE_PRICE_VAULTAI_MANAGED_CLOUD", default="")
STRIPE_PRICE_VAULTAI_SELF_HOSTED = env.str("STRIPE_PRICE_VAULTAI_SELF_HOSTED", default="")
ORG_USAGE_REPORT_RATE = env.str("ORG_USAGE_REPORT_RATE", default="30/h")  # per organization
ORG_USER_COUNT_MAX = env.int("ORG_USER_COUNT_MAX", default=1_000_000)  # larger = rejected
ORG_METER_MAX_ATTEMPTS = env.int("ORG_METER_MAX_ATTEMPTS", default=5)  # then "failed"
ORG_METER_RETRY_BASE_SECONDS = env.int("ORG_METER_RETRY_BASE_SECONDS", default=300)  # doubles

# Operations.
# A quota reservation or credit hold older than this was left by a worker that died between
# reserve and settle; the sweepers (every 5 minutes) release it. Longest upstream call + margin.
# Wall-clock limit of one proxied call (every provider tried, the whole stream). The stale-
# reservation sweeper must never release a call that is still running, so its threshold is
# derived from this deadline, not from the per-read upstream timeout.
PROXY_CALL_DEADLINE_SECONDS = env.int("PROXY_CALL_DEADLINE_SECONDS", default=600)
STALE_RESERVATION_SECONDS = env.int("STALE_RESERVATION_SECONDS", default=PROXY_CALL_DEADLINE_SECONDS + 300)
if STALE_RESERVATION_SECONDS <= PROXY_CALL_DEADLINE_SECONDS + PROXY_QUOTA_BATCH_MAX_AGE:
    # A spare reservation is handed out up to PROXY_QUOTA_BATCH_MAX_AGE after it was taken.
    raise ImproperlyConfigured(
        "STALE_RESERVATION_SECONDS must exceed PROXY_CALL_DEADLINE_SECONDS + PROXY_QUOTA_BATCH_MAX_AGE."
    )
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# /metrics is also open to these client addresses (REMOTE_ADDR), without the token.
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=["127.0.0.1", "::1"])
# Dashboards: revenue in other currencies is converted to USD with these rates (JSON object).
EXCHANGE_RATES_TO_USD = {
    code.lower(): Decimal(str(rate))
    for code, rate in env.json(
        "EXCHANGE_RATES_TO_USD", default={"usd": "1", "eur": "1.08", "dzd": "0.0074"}
    ).items()
}
# A workspace is flagged abusive when today's calls, failed calls, rate-limited minutes or
# minutes with a dead key reach these (its members' keys add up).
ABUSE_REQUESTS_PER_DAY = env.int("ABUSE_REQUESTS_PER_DAY", default=5000)
ABUSE_ERRORS_PER_DAY = env.int("ABUSE_ERRORS_PER_DAY", default=200)
ABUSE_RATE_LIMITED_MINUTES_PER_DAY = env.int("ABUSE_RATE_LIMITED_MINUTES_PER_DAY", default=30)
ABUSE_INVALID_KEY_MINUTES_PER_DAY = env.int("ABUSE_INVALID_KEY_MINUTES_PER_DAY", default=10)

# --- HTTP server limits (gunicorn worker class core.workers.BoundedUvicornWorker) ------------
# A request head (request line + headers) larger than this answers 431; a body larger than this
# answers 413 before the application reads it. Keep the reverse proxy's limits at or below these
# (docs/hardening.md). The body bound stays above the applications' own limits, which answer first.
HTTP_MAX_HEADER_BYTES = env.int("HTTP_MAX_HEADER_BYTES", default=64 * 1024)
HTTP_MAX_BODY_BYTES = env.int(
    "HTTP_MAX_BODY_BYTES",
    default=max(4 * 1024 * 1024, PROXY_MAX_BODY_BYTES, vars().get("DATA_UPLOAD_MAX_MEMORY_SIZE") or 2621440),
)
