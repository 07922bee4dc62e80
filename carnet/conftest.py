"""Shared test fixtures and factories. Tests hit the real database (SQLite or DATABASE_URL)."""

import itertools
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connections, transaction
from django.test import Client

from carnet.clinic.models import Discipline, IncomeCategory, Location, Tax, Treatment
from carnet.clinic.selectors import clinic_get, forget_clinic_currency
from carnet.core import clock
from carnet.core.permissions import AccessLevel
from carnet.core.tests.live_server import free_port
from carnet.people.models import Patient, StaffMember

_seq = itertools.count(1)
PASSWORD = "correct horse battery staple"


_DB_FIXTURES = {"db", "transactional_db", "live_server", "django_db_reset_sequences"}


def pytest_collection_modifyitems(items):
    """Every test that uses the database may also reach the test gateway's own database (settings,
    carnet.gateway.routers): the same django_db marker, with both databases."""
    for item in items:
        marker = item.get_closest_marker("django_db")
        if marker is None and not _DB_FIXTURES & set(getattr(item, "fixturenames", ())):
            continue
        kwargs = dict(marker.kwargs) if marker else {}
        if kwargs.get("databases") in (None, ["default"], ("default",)):
            kwargs["databases"] = ["default", "gateway"]
            item.add_marker(
                pytest.mark.django_db(*(marker.args if marker else ()), **kwargs), append=False
            )


@pytest.fixture(autouse=True)
def _fresh_currency_cache():
    forget_clinic_currency()  # test databases are reset without signals


@pytest.fixture(autouse=True)
def _mail_sent_at_once(settings):
    # Queued email runs as soon as it is enqueued (still only after commit) into mail.outbox.
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture(autouse=True)
def _two_factor_not_enforced(settings):
    # Most tests log in an owner with force_login; the two-factor tests turn the rule back on
    # (carnet/staff/tests/test_two_factor.py).
    settings.TWO_FACTOR_ENFORCED = False


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    # argon2 is the real hasher (tested in test_auth); tests elsewhere use a fast one.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def make_staff(
    level: int = AccessLevel.FRONT_DESK,
    *,
    billing: bool = True,
    practitioner: bool = False,
    name: str | None = None,
) -> StaffMember:
    n = next(_seq)
    user = get_user_model().objects.create_user(
        username=f"staff{n}", email=f"staff{n}@example.test", password=PASSWORD
    )
    return StaffMember.objects.create(
        user=user,
        display_name=name or f"Staff {n}",
        access_level=level,
        can_access_billing=billing,
        is_practitioner=practitioner,
    )


def make_patient(**fields) -> Patient:
    n = next(_seq)
    data = {
        "first_name": f"Pat{n}",
        "last_name": "Test",
        "email": f"pat{n}@example.test",
        "phone": f"555-01{n:02d}",
    }
    data.update(fields)
    return Patient.objects.create(created_at=clock.now(), **data)


def make_catalog():
    """A location, discipline, income category, tax and one treatment."""
    clinic_get()
    loc = Location.objects.create(name=f"Main {next(_seq)}", time_zone="America/Toronto")
    disc = Discipline.objects.create(name=f"Massage {next(_seq)}")
    cat = IncomeCategory.objects.create(name=f"Massage income {next(_seq)}")
    tax = Tax.objects.create(name=f"HST {next(_seq)}", rate=Decimal("13.000"))
    treatment = Treatment.objects.create(
        name="Massage 60",
        discipline=disc,
        income_category=cat,
        duration_minutes=60,
        price_minor=9000,
    )
    treatment.taxes.set([tax])
    return {
        "location": loc,
        "discipline": disc,
        "income_category": cat,
        "tax": tax,
        "treatment": treatment,
    }


class Api:
    """A JSON client for /api/v1/ logged in as a user (session auth, CSRF not enforced)."""

    def __init__(self, user=None):
        self.client = Client()
        if user is not None:
            self.client.force_login(user)

    def _call(self, method, path, body=None, **headers):
        kwargs = {"content_type": "application/json"}
        if body is not None:
            kwargs["data"] = json.dumps(body)
        return getattr(self.client, method)(f"/api/v1{path}", headers=headers, **kwargs)

    def get(self, path, **headers):
        return self.client.get(f"/api/v1{path}", headers=headers)

    def post(self, path, body=None, **headers):
        return self._call("post", path, body, **headers)

    def patch(self, path, body=None, **headers):
        return self._call("patch", path, body, **headers)

    def delete(self, path, body=None, **headers):
        return self._call("delete", path, body, **headers)


@pytest.fixture
def catalog(db):
    return make_catalog()


@pytest.fixture
def owner(db):
    return make_staff(AccessLevel.ACCOUNT_OWNER, name="Owner")


@pytest.fixture
def admin_staff(db):
    return make_staff(AccessLevel.ADMIN_BILLING, name="Admin")


@pytest.fixture
def front_desk(db):
    return make_staff(AccessLevel.FRONT_DESK, name="Front Desk")


# Playwright's sync API runs an event loop in the test thread; the ORM calls the test itself
# makes there are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser():
    # late: conftest loads for every run, and only the browser tests need Playwright
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield instance
        instance.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(10000)
    pg = context.new_page()
    yield pg
    context.close()


def log_in(page, user, *, path="/login/"):
    page.goto(path)
    page.fill("input[name=login]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


def fits_and_accessible(page) -> None:
    """The page needs no sideways scrolling (the document is no wider than the viewport) and
    axe-core finds no violation anywhere on it, layout included, touch target sizes too."""
    # late: conftest loads for every run, and only the browser tests need axe
    from axe_playwright_python.sync_playwright import Axe

    # A click that navigates may still be loading the next document: measure that one, whole.
    page.wait_for_load_state("load")
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    wide = page.evaluate("""() => [...document.querySelectorAll('body *')]
        .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
        .map(e => e.tagName + '.' + e.className)""")
    assert widths[0] <= widths[1], (page.url, widths, wide[:8])
    # target-size: touch targets of at least 24x24 px (WCAG 2.2, 2.5.8), asked for explicitly.
    results = Axe().run(page, options={"rules": {"target-size": {"enabled": True}}})
    assert results.violations_count == 0, (page.url, results.generate_report())


def race(n: int, work) -> list:
    """Run work(i) in n real threads released at once; each result, or the exception it raised.

    Each thread closes its own database connection, so the threads really race on the database.
    """
    barrier, results = threading.Barrier(n), [None] * n

    def worker(i):
        try:
            barrier.wait(timeout=10)
            results[i] = work(i)
        except Exception as exc:  # the caller asserts on it
            results[i] = exc
        finally:
            connections.close_all()  # the test gateway's connection too

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


class ExampleRollback:
    """One state-machine example in transactions rolled back at its end, on Carnet's database and
    on the test gateway's (the fake remote starts each example empty too). Marked as a test's own
    transaction, so gateway calls inside it are allowed as in any test (gateway.services)."""

    def __enter__(self):
        self.atomics = [transaction.atomic(using=alias) for alias in ("default", "gateway")]
        for atomic in self.atomics:
            atomic._from_testcase = True
            atomic.__enter__()
        return self

    def __exit__(self, *exc):
        for alias, atomic in zip(("gateway", "default"), reversed(self.atomics)):
            transaction.set_rollback(True, using=alias)
            atomic.__exit__(None, None, None)
        return False


# ---------------------------------------------------------------- Stripe against localstripe


@pytest.fixture(scope="session")
def localstripe():
    """localstripe (a stateful fake Stripe) on a free loopback port for the whole
    run: its base URL."""
    port = free_port()
    script = Path(__file__).parent / "gateway" / "tests" / "localstripe_server.py"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/js.stripe.com/v3/", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"localstripe did not start: {proc.stderr.read().decode()[-2000:]}"
                    )
                time.sleep(0.1)
        else:
            raise RuntimeError("localstripe did not answer within 10 seconds")
        yield base
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def stripe_gateway(settings, localstripe):
    """Carnet configured for Stripe, pointed at localstripe."""
    settings.CARNET_GATEWAY = "carnet.gateway.stripe.StripeGateway"
    settings.STRIPE_SECRET_KEY = "sk_test_carnet"
    settings.STRIPE_PUBLISHABLE_KEY = "pk_test_carnet"
    settings.STRIPE_WEBHOOK_SECRET = "whsec_carnet_tests"
    settings.STRIPE_API_BASE = localstripe
    return localstripe
