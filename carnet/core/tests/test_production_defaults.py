"""Issue 17, production defaults: no start without a secret key, no test host, the HTTPS settings,
`check --deploy` clean, `Cache-Control: no-store` on everything that carries patients' data or
money, the API docs from a vendored Swagger UI, and a production install without the test tools.

The settings are read in a fresh interpreter each time, as a production server would read them
(the test process has already loaded its own)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import reverse

from carnet.billing.tests.factories import manual_invoice
from carnet.conftest import make_patient, make_staff
from carnet.core.permissions import AccessLevel
from carnet.people.services import patient_portal_enable

BASE_DIR = Path(__file__).resolve().parents[3]
PRODUCTION = {
    "SECRET_KEY": "k" * 20 + "production-only-" + "z9" * 20,
    "HTTPS": "1",
    "ALLOWED_HOSTS": "clinic.example",
    "CSRF_TRUSTED_ORIGINS": "https://clinic.example",
    "PROXY_SSL_HEADER": "1",
}


def _run(code: str, **env) -> subprocess.CompletedProcess:
    base = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "SECRET_KEY",
            "DEBUG",
            "HTTPS",
            "ALLOWED_HOSTS",
            "DJANGO_SETTINGS_MODULE",
            "DJANGO_ALLOW_ASYNC_UNSAFE",
        }
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**base, **env},
        capture_output=True,
        text=True,
        cwd=BASE_DIR,
        timeout=120,
    )


def _settings(*names: str, **env) -> dict:
    code = (
        "import json, django; from django.conf import settings as s; "
        f"print(json.dumps({{n: getattr(s, n, None) for n in {list(names)!r}}}))"
    )
    out = _run(code, DJANGO_SETTINGS_MODULE="carnet.settings", **env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_refuses_to_start_without_a_secret_key_when_debug_is_off():
    for env in ({}, {"DEBUG": "0"}, {"DEBUG": "0", "SECRET_KEY": ""}):
        out = _run("import django; django.setup()", DJANGO_SETTINGS_MODULE="carnet.settings", **env)
        assert out.returncode != 0
        assert "SECRET_KEY is not set" in out.stderr
    # The WSGI application (what gunicorn loads) refuses the same way.
    out = _run("import carnet.wsgi")
    assert out.returncode != 0 and "SECRET_KEY is not set" in out.stderr
    # With a key, or on a development machine (DEBUG=1), it starts.
    assert _run("import carnet.wsgi", SECRET_KEY=PRODUCTION["SECRET_KEY"]).returncode == 0
    assert _run("import carnet.wsgi", DEBUG="1").returncode == 0


def test_allowed_hosts_default_has_no_test_host():
    hosts = _settings("ALLOWED_HOSTS", SECRET_KEY="x" * 50)["ALLOWED_HOSTS"]
    assert "testserver" not in hosts and "*" not in hosts
    assert _settings("ALLOWED_HOSTS", **PRODUCTION)["ALLOWED_HOSTS"] == ["clinic.example"]


def test_https_turns_on_hsts_redirect_secure_cookies_trusted_origins_and_the_proxy_header():
    names = (
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "CSRF_TRUSTED_ORIGINS",
        "SECURE_PROXY_SSL_HEADER",
    )
    on = _settings(*names, **PRODUCTION)
    assert on == {
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "CSRF_TRUSTED_ORIGINS": ["https://clinic.example"],
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
    }
    off = _settings(
        *names, SECRET_KEY="x" * 50
    )  # plain HTTP (the demo): nothing that would lock it out
    assert (
        not off["SECURE_SSL_REDIRECT"]
        and off["SECURE_HSTS_SECONDS"] == 0
        and off["SECURE_PROXY_SSL_HEADER"] is None
    )


def test_check_deploy_is_clean_for_the_documented_production_settings():
    out = _run(
        "import sys; from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'check', '--deploy', '--fail-level', 'WARNING'])",
        DJANGO_SETTINGS_MODULE="carnet.settings",
        **PRODUCTION,
    )
    assert out.returncode == 0, out.stderr
    assert "no issues" in out.stdout
    # The check really checks: the same settings over plain HTTP are not clean.
    plain = {**PRODUCTION, "HTTPS": "0"}
    out = _run(
        "from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'check', '--deploy', '--fail-level', 'WARNING'])",
        DJANGO_SETTINGS_MODULE="carnet.settings",
        **plain,
    )
    assert out.returncode != 0 and "SECURE_SSL_REDIRECT" in out.stderr


# ---------------------------------------------------------------- Cache-Control: no-store


@pytest.mark.django_db
def test_no_store_on_every_response_with_patient_or_money_data(client, catalog):
    owner = make_staff(AccessLevel.ACCOUNT_OWNER)
    patient = make_patient(first_name="Léa", last_name="Bélanger", email="lea@example.test")
    invoice = manual_invoice(owner, patient, 5000, category=catalog["income_category"])
    client.force_login(owner.user)
    urls = [
        reverse("staff:dashboard"),
        f"/patients/{patient.pk}/",
        reverse("billing:tab", args=[patient.pk]),
        reverse("billing:receipt", args=[invoice.pk]),
        reverse("billing:receipt_pdf", args=[invoice.pk]),
        reverse("reports:billing_transactions") + "?format=csv",
        reverse("reports:billing_transactions") + "?format=xlsx",
        "/api/v1/patients",
        f"/api/v1/patients/{patient.pk}",
        "/api/v1/does-not-exist",
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code in (200, 404), (url, response.status_code)
        assert "no-store" in response.get("Cache-Control", ""), url
    # An error and a patient's own portal page too.
    assert (
        "no-store"
        in client.post("/api/v1/patients", {}, content_type="application/json")["Cache-Control"]
    )
    patient = patient_portal_enable(
        actor=owner.user, patient=patient, password="a long pass phrase 42"
    )
    client.logout()
    client.force_login(patient.user)
    portal = client.get("/portal/")
    assert portal.status_code == 200 and "Bélanger" in portal.content.decode()
    assert "no-store" in portal["Cache-Control"]
    assert "no-store" in client.get(reverse("staff:login"))["Cache-Control"]


@pytest.mark.django_db
def test_static_files_stay_cacheable(client):
    response = client.get("/static/carnet/carnet.css")
    assert response.status_code == 200
    assert "no-store" not in response.get("Cache-Control", "")


# ---------------------------------------------------------------- API docs


@pytest.mark.django_db
def test_api_docs_use_the_vendored_swagger_ui_without_a_cdn_or_inline_script(client):
    response = client.get("/api/v1/docs")
    html = response.content.decode()
    assert response.status_code == 200
    assert "cdn" not in html.lower() and "https://" not in html
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, flags=re.S)
    for (
        attrs,
        body,
    ) in scripts:  # every script is a file of ours, or a JSON data block (not executed)
        assert 'src="/static/' in attrs or (
            'type="application/json"' in attrs and json.loads(body)
        ), attrs
    for path in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        assert client.get(path).status_code == 200, path
    assert json.loads(scripts[0][1])["url"] == "/api/v1/openapi.json"
    # The document the page reads is public too (README: why), and holds no clinic data.
    assert client.get("/api/v1/openapi.json").status_code == 200


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_api_docs_page_renders_under_carnet_csp_from_carnet_itself(page, live_server):
    outside, violations = [], []
    page.on(
        "request", lambda r: None if r.url.startswith(live_server.url) else outside.append(r.url)
    )
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    response = page.goto("/api/v1/docs")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.locator(".swagger-ui .info .title").wait_for(
        timeout=60000
    )  # a 1.5 MB bundle on a busy CI machine
    assert "Carnet API" in page.locator(".swagger-ui .info .title").inner_text()
    assert (
        page.locator(".opblock").count() > 20
    )  # the operations were read from the OpenAPI document
    assert not outside, outside
    assert not violations, violations


# ---------------------------------------------------------------- dependencies

TEST_ONLY = {
    "pytest",
    "pytest-django",
    "playwright",
    "schemathesis",
    "hypothesis",
    "werkzeug",
    "pip-audit",
    "pypdf",
}


def _locked(path: Path) -> dict[str, list[str]]:
    """name → its hashes, from a pip-compile lock file."""
    packages, name = {}, None
    for line in path.read_text().splitlines():
        pin = re.match(r"^([A-Za-z0-9._\[\]-]+)==\S+", line)
        if pin:
            name = re.sub(r"\[.*\]", "", pin.group(1)).lower()
            packages[name] = []
        elif name and "--hash=sha256:" in line:
            packages[name].append(line.split("--hash=sha256:")[1].split()[0])
    return packages


def test_production_install_has_no_test_tools_and_every_lock_carries_hashes():
    runtime = _locked(BASE_DIR / "requirements.lock")
    everything = _locked(BASE_DIR / "requirements-test.lock")
    assert "django" in runtime and "gunicorn" in runtime and "psycopg" in runtime
    assert not TEST_ONLY & set(runtime), TEST_ONLY & set(runtime)
    assert TEST_ONLY <= set(everything)
    for name, hashes in {**runtime, **everything}.items():
        assert hashes and all(len(h) == 64 for h in hashes), name
    # The test lock installs the very same runtime versions.
    pins = lambda p: dict(
        re.findall(r"^([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==(\S+)", p.read_text(), flags=re.M)
    )
    runtime_pins, test_pins = (
        pins(BASE_DIR / "requirements.lock"),
        pins(BASE_DIR / "requirements-test.lock"),
    )
    assert {n: v for n, v in test_pins.items() if n in runtime_pins} == runtime_pins
