"""One settings module, driven by environment variables.

DATABASE_URL   sqlite:///var/carnet.sqlite3 (default) or postgres://user@host:5432/name
SECRET_KEY     required when DEBUG is off: Carnet refuses to start without it (`make demo` makes
               one in var/)
HTTPS=1        production behind TLS: secure cookies, HTTPS redirect, HSTS (see the README's
               production checklist)
SESSION_IDLE_MINUTES  staff and patient sessions end after this much inactivity (default 30)
IDEMPOTENCY_KEY_HOURS  how long an Idempotency-Key's first response is kept for replay (default 72)
EMAIL_HOST     an SMTP server turns on real email (see "Email" below); without it mail lands in
               var/mail/
"""

import codecs
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CARNET_VAR_DIR", BASE_DIR / "var"))


def _env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, str(default)).lower() in {"1", "true", "yes", "on"}


def _env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = _env_bool("DEBUG", False)
# The key signs sessions, CSRF tokens and the Pay Balance links: a public default would let anyone
# forge them, so without DEBUG there is no default at all.
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it to a long random string (e.g. the output of `python -c "
            "'import secrets; print(secrets.token_urlsafe(50))'`), or DEBUG=1 on a development "
            "machine."
        )
    SECRET_KEY = "carnet-debug-only-not-secret"
# Tests add Django's "testserver" themselves.
ALLOWED_HOSTS = _env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = _env_list("CSRF_TRUSTED_ORIGINS")  # e.g. https://clinic.example

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_tasks",
    "django_tasks_db",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "carnet.core",
    "carnet.ledger",
    "carnet.clinic",
    "carnet.people",
    "carnet.gateway",
    "carnet.billing",
    "carnet.scheduling",
    "carnet.giftcards",
    "carnet.passes",
    "carnet.reports",
    "carnet.imports",
    "carnet.accounting",
    "carnet.staff",
    "carnet.portal",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "carnet.core.token_calls.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "carnet.core.token_calls.AuthenticationMiddleware",
    "carnet.core.token_calls.OTPMiddleware",
    "carnet.core.token_calls.MessageMiddleware",
    "carnet.clinic.middleware.ClinicTimeZoneMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "carnet.core.middleware.SecurityHeadersMiddleware",
    "carnet.core.middleware.NullCharacterMiddleware",
    "carnet.staff.middleware.SessionLifetimeMiddleware",
    "carnet.staff.middleware.LoginSessionMiddleware",
    "carnet.staff.middleware.TwoFactorMiddleware",
    "carnet.staff.middleware.PasswordChangeRequiredMiddleware",
    "carnet.core.middleware.IdempotencyMiddleware",
    "carnet.core.middleware.DomainErrorMiddleware",
]

ROOT_URLCONF = "carnet.urls"
WSGI_APPLICATION = "carnet.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "carnet" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "carnet.core.context_processors.carnet",
                "carnet.core.context_processors.allowed",
            ],
            "builtins": [
                "carnet.core.templatetags.carnet",
                "carnet.clinic.templatetags.clinic_money",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'carnet.sqlite3'}"),
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["OPTIONS"] = {
        # IMMEDIATE takes the write lock when a transaction starts, so read-then-write
        # services serialise instead of failing with "database is locked" mid-transaction.
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;",
    }
    # A file (not :memory:) so that race tests' threads share one test database.
    # One file per test process, so parallel runs on one machine do not share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"}
    # Server-side binding with prepared statements (issue 25): a statement the connection has run
    # DB_PREPARE_THRESHOLD times is prepared, and PostgreSQL then skips parsing and planning it
    # (its CPU per redemption fell by about a third). Binding without preparing is slower than
    # Django's default client-side binding, so the two go together; DB_PREPARE_THRESHOLD=0 turns
    # both off (e.g. behind a transaction-pooling PgBouncer older than 1.21). Useful with
    # CONN_MAX_AGE > 0: prepared statements live as long as the connection.
    _prepare = int(os.environ.get("DB_PREPARE_THRESHOLD", "2"))
    if _prepare > 0:
        DATABASES["default"]["OPTIONS"] = {
            "server_side_binding": True,
            "prepare_threshold": _prepare,
        }

# The built-in test gateway stands in for a remote card processor, so its records live in a
# database of their own (a SQLite file): Carnet's transactions and rollbacks cannot touch them,
# as they cannot touch a real processor's (carnet.gateway.routers).
VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES["gateway"] = {
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": os.environ.get("CARNET_TEST_GATEWAY_DB", str(VAR_DIR / "test_gateway.sqlite3")),
    "OPTIONS": {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL;",
    },
    # Tests: one file per test process; servers the tests start are pointed at it by
    # CARNET_TEST_GATEWAY_DB.
    "TEST": {"NAME": str(VAR_DIR / f"test-gateway-{os.getpid()}.sqlite3")},
}
DATABASE_ROUTERS = ["carnet.gateway.routers.TestGatewayRouter"]

# ---------------------------------------------- Card processor (README "Taking real card payments")
# Unset: the built-in test gateway (demo, tests). carnet.gateway.stripe.StripeGateway: Stripe, with
# its keys below; card numbers then never reach Carnet (Stripe.js takes them in the browser).
CARNET_GATEWAY = os.environ.get("CARNET_GATEWAY", "carnet.gateway.testing.TestGateway")
STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "")
STRIPE_PUBLISHABLE_KEY = os.environ.get("STRIPE_PUBLISHABLE_KEY", "")
STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "")
STRIPE_API_BASE = os.environ.get(
    "STRIPE_API_BASE", ""
)  # only for tests against a local fake Stripe
if CARNET_GATEWAY.endswith(".StripeGateway"):
    # A missing key would only show at the first card payment; refuse to start instead.
    for _name in ("STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "STRIPE_WEBHOOK_SECRET"):
        if not globals()[_name]:
            raise ImproperlyConfigured(
                f"CARNET_GATEWAY is Stripe but {_name} is not set. Copy it from the Stripe "
                "Dashboard (Developers → API keys, or the webhook endpoint's signing secret) "
                "into the environment."
            )
    if STRIPE_API_BASE and STRIPE_SECRET_KEY.startswith(("sk_live_", "rk_live_")):
        # It would send live payments, and the pages' Stripe.js, to a server other than Stripe's.
        raise ImproperlyConfigured(
            "STRIPE_API_BASE is set with a live Stripe key: it is only for tests against a local "
            "fake Stripe. Unset it to take real payments."
        )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
# ASVS L2 (SPEC 14): at least 12 characters, not a common password, not all digits, not close to the
# login's username, name or email. A login whose password fails them is asked to change it when it
# next logs in (carnet.staff.account_views).
AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator",
        "OPTIONS": {"user_attributes": ("username", "first_name", "last_name", "email")},
    },
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# A password reset link works once, for this long (seconds).
PASSWORD_RESET_TIMEOUT = int(os.environ.get("PASSWORD_RESET_MINUTES", "60")) * 60
# How long a patient's portal invitation link works (days).
PORTAL_INVITATION_DAYS = int(os.environ.get("PORTAL_INVITATION_DAYS", "7"))
# How long the link of an online sign-up's confirmation email works (hours).
SIGN_UP_LINK_HOURS = int(os.environ.get("SIGN_UP_LINK_HOURS", "24"))
LOGIN_URL = "staff:login"
# Two-factor log-in (carnet/people/two_factor.py): required for Full Access and Account Owner (and
# all staff when the clinic says so). Always on; only the test suite turns the rule off for tests
# that are not about it (carnet/conftest.py), since most log in as an owner with force_login.
TWO_FACTOR_ENFORCED = True
# "Remember this browser" on the code page (off unless ticked) skips the code for this many days.
TWO_FACTOR_REMEMBER_DAYS = int(os.environ.get("TWO_FACTOR_REMEMBER_DAYS", "30"))


def _totp_issuer(device):
    from carnet.clinic.selectors import (
        clinic_get,
    )  # the app registry is not ready when settings load

    return clinic_get().name


OTP_TOTP_ISSUER = _totp_issuer  # the name authenticator apps show next to the login

# Idle expiry: the cookie's age is renewed on every request.
SESSION_IDLE_MINUTES = int(os.environ.get("SESSION_IDLE_MINUTES", "30"))
SESSION_COOKIE_AGE = SESSION_IDLE_MINUTES * 60
# Absolute lifetime: a session ends this long after its log-in, however active
# (carnet.staff.middleware).
SESSION_MAX_HOURS = int(os.environ.get("SESSION_MAX_HOURS", "12"))
SESSION_SAVE_EVERY_REQUEST = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
HTTPS = _env_bool("HTTPS", False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
# Behind TLS: plain HTTP is redirected and browsers are told to use HTTPS only (HSTS, a year).
SECURE_SSL_REDIRECT = _env_bool("SECURE_SSL_REDIRECT", HTTPS)
SECURE_HSTS_SECONDS = int(os.environ.get("HSTS_SECONDS", "31536000" if HTTPS else "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = _env_bool("HSTS_PRELOAD", False)
# A reverse proxy that ends TLS says so in X-Forwarded-Proto; trust it only when it is there
# (PROXY_SSL_HEADER=1).
if _env_bool("PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Failed log-ins are throttled per login and per IP with growing waits
# (carnet/people/login_throttle.py). HSTS preloading (security.W021) is a promise made by submitting
# the domain to browsers' lists: the operator's choice (HSTS_PRELOAD=1), not a default.
SILENCED_SYSTEM_CHECKS = ["security.W021"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# collectstatic is optional: WhiteNoise serves straight from the app folders.
STATIC_ROOT = os.environ.get("STATIC_ROOT") or None
STATICFILES_DIRS = [BASE_DIR / "carnet" / "static"]
WHITENOISE_USE_FINDERS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
}

# ---------------------------------------------------------------- Email and background tasks
# Every email is queued after the database commit (carnet/core/mail.py) and sent by the
# worker: `manage.py db_worker`. With EMAIL_HOST set, mail goes out by SMTP; without it (demo,
# development) each message is written as a file under var/mail/. EMAIL_BACKEND overrides both.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "587"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _env_bool("EMAIL_USE_TLS", not _env_bool("EMAIL_USE_SSL", False))
EMAIL_USE_SSL = _env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = int(os.environ.get("EMAIL_TIMEOUT", "30"))
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND") or (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.filebased.EmailBackend"
)
EMAIL_FILE_PATH = VAR_DIR / "mail"
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Carnet <no-reply@carnet.invalid>")

# The database queue (django-tasks-db); tests switch to the ImmediateBackend (carnet/conftest.py).
TASKS = {"default": {"BACKEND": os.environ.get("TASKS_BACKEND", "django_tasks_db.DatabaseBackend")}}

# Absolute links in emails (the Pay Balance link). Empty: taken from the staff member's request.
SITE_URL = os.environ.get("SITE_URL", "").rstrip("/")
# How long a Pay Balance link works.
PAY_BALANCE_LINK_DAYS = int(os.environ.get("PAY_BALANCE_LINK_DAYS", "7"))

# ------------------------------------------------------------- Input limits (carnet/core/limits.py)
# The largest line total and the largest payment, in major units of the clinic currency.
MAX_LINE_AMOUNT = int(os.environ.get("MAX_LINE_AMOUNT", "1000000"))
MAX_PAYMENT_AMOUNT = int(os.environ.get("MAX_PAYMENT_AMOUNT", "1000000"))
# How far ahead patients may book online.
ONLINE_BOOKING_HORIZON_DAYS = int(os.environ.get("ONLINE_BOOKING_HORIZON_DAYS", "365"))
# How long an Idempotency-Key (API) or a form key (pages) is remembered;
# the daily job purges older ones.
IDEMPOTENCY_KEY_HOURS = int(os.environ.get("IDEMPOTENCY_KEY_HOURS", "72"))

# -------------------------------------------------------------- Imports (carnet/imports/reading.py)
# The Windows code page the clinic's spreadsheets save CSV in when not UTF-8 (cp1252: Western Europe
# and the Americas; cp1250 Central Europe, cp1251 Cyrillic, cp1253 Greek, cp1254 Turkish…).
IMPORT_WINDOWS_ENCODING = os.environ.get("IMPORT_WINDOWS_ENCODING", "cp1252")
try:
    codecs.lookup(IMPORT_WINDOWS_ENCODING)
except LookupError:
    raise ImproperlyConfigured(
        f"IMPORT_WINDOWS_ENCODING={IMPORT_WINDOWS_ENCODING!r} is not an encoding Python "
        "knows; use a Windows code page such as cp1252 or cp1250."
    ) from None
