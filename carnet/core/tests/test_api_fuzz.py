"""Issue 9: fuzz /api/v1 from its own OpenAPI schema with schemathesis,
in-process through the WSGI app.

Every operation gets generated requests (positive and negative data), authenticated as an Account
Owner (API token) and as a patient (session cookie + CSRF token). A request must never give a 5xx,
and a response whose status the schema documents must match its schema (`not_a_server_error`,
`response_schema_conformance`).

`status_code_conformance` is left out on purpose: the schema documents only the success status of
each operation, while every operation also answers 401/403/404/409/422 problem details by design
(carnet/api.py's exception handlers), so that check would flag every refusal rather than bugs.

Issue 17 adds the hostile values that once gave 500s (amounts of 2^63 and 10^30, `true` or "1e2"
for an amount, NUL and over-long text, years 9999 and 0001, formula-like text) to every field of
every operation, as the owner and as the patient: each must be refused or handled
with a 4xx, never a 5xx.

The run is bounded and reproducible for CI: a fixed number of examples per operation, a fixed seed,
no shrinking (the failing request is reported as a curl command). Each example runs inside a
savepoint that is rolled back, so every request sees the same small seeded world (ids that exist, a
sold package, an appointment) and DELETEs or refunds do not eat the data the next operation needs.
"""

import copy
import datetime as dt
import os
import warnings
from collections import Counter

import pytest
import schemathesis
from django.db import transaction
from django.test import Client
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from carnet.conftest import make_catalog, make_patient, make_staff
from carnet.core import clock
from carnet.core.permissions import AccessLevel
from carnet.gateway import services
from carnet.passes.tests.factories import membership_template, package_template, sold_package
from carnet.people.models import Shift
from carnet.people.services import api_token_create, patient_sign_up
from carnet.scheduling.tests.factories import at, book, clinic_set, practitioner

# Sequences reset so that the seeded ids are 1..IDS on SQLite and PostgreSQL alike.
pytestmark = pytest.mark.django_db(transaction=True, reset_sequences=True)
IDS = 4
MIN_REACHED = {"owner": 60, "patient": 4}

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
# A fixed seed, not `derandomize` (which seeds from the test's source, so a reformat changed the
# requests and the reach); another seed (FUZZ_SEED=n) explores other requests.
SEED = int(os.environ.get("FUZZ_SEED", "2"))
CSRF = "f" * 32  # an unmasked CSRF secret: cookie and header must match
NOW = at("2026-05-01", "10:00")

# Findings in code another engineer is editing right now: reported, not fixed here. Each stays a
# warning until fixed; remove the entry with the fix so the fuzzer guards it again.
KNOWN: dict[str, str] = {}  # "METHOD path": why a finding is tolerated for now (none)


def _world():
    clinic_set(time_zone="America/Toronto")
    catalog = make_catalog()
    catalog["treatment"].online_bookable = True
    catalog["treatment"].save()
    owner = make_staff(AccessLevel.ACCOUNT_OWNER, name="Owner")
    desk = make_staff(AccessLevel.FRONT_DESK, name="Desk")
    prac = practitioner(catalog["location"])
    for staff in (owner, desk):
        staff.locations.add(catalog["location"])
    Shift.objects.create(
        staff=prac,
        location=catalog["location"],
        weekday=1,
        start_time=dt.time(9),
        end_time=dt.time(17),
    )
    me = patient_sign_up(
        first_name="Nora",
        last_name="New",
        email="nora@example.test",
        password="a long pass phrase 42",
    )
    others = [make_patient() for _ in range(2)]
    template = package_template(catalog)
    membership_template(catalog)
    sold_package(owner, me, template)
    sold_package(owner, others[0], template, paid=False)
    book(owner, catalog, prac, at("2026-05-12", "09:00"), patients=[me])
    book(owner, catalog, prac, at("2026-05-12", "11:00"), patients=[others[0]])
    _, raw = api_token_create(actor=owner.user, name="fuzz")
    client = Client()
    client.force_login(me.user)
    return {
        "owner": {"headers": {"Authorization": f"Bearer {raw}"}, "cookies": {}},
        "patient": {
            "headers": {"X-CSRFToken": CSRF},
            "cookies": {"sessionid": client.cookies["sessionid"].value, "csrftoken": CSRF},
        },
    }


def _schema():
    # late: importing carnet.wsgi builds the WSGI handler and its middleware: at test time, under
    # the test's settings, not at collection
    from carnet.wsgi import application

    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application)


def _checks():
    return [not_a_server_error, response_schema_conformance]


def _near(case, seeded, pk):
    # Half the valid requests aim their integer path ids at the seeded world, so that they reach the
    # code behind the 404 (ids are 1..IDS in every table, sequences being reset for this test).
    if seeded and case.path_parameters:
        for name, value in case.path_parameters.items():
            if isinstance(value, int) and not isinstance(value, bool):
                case.path_parameters[name] = pk
    return case


def _fuzz(operation, auth, checks, seen, reached):
    strategy = st.builds(
        _near,
        operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
        st.booleans(),
        st.integers(1, IDS),
    ) | operation.as_strategy(schemathesis.GenerationMode.NEGATIVE)

    @seed(SEED)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case):
        with transaction.atomic():
            try:
                if "Authorization" not in auth["headers"] and case.headers:
                    case.headers.pop(
                        "Authorization", None
                    )  # a generated bearer token would be a 401
                response = case.call(**auth)
                seen[response.status_code] += 1
                if response.status_code < 300:
                    reached.add(operation.label)
                case.validate_response(response, checks=checks, headers=auth["headers"])
            finally:
                transaction.set_rollback(True)

    run()


@pytest.fixture
def _gateway_in_rollback(monkeypatch):
    """Each example runs in a transaction rolled back at its end (below), so a card's gateway call
    happens inside it: allowed here, as in a test case's own transaction (gateway.services)."""
    monkeypatch.setattr(services, "in_transaction", lambda: False)


@pytest.fixture
def _keep_connection():
    # Django's WSGI handler closes the database connection when a request starts and finishes;
    # inside the test's transaction that would end it. Django's own test client
    # disconnects these the same way.
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.mark.parametrize(
    ("role", "own"), [("owner", "/api/v1/patients"), ("patient", "/api/v1/me/passes")]
)
def test_every_operation_answers_without_5xx_and_matches_its_schema(
    role, own, _keep_connection, _gateway_in_rollback
):
    with clock.frozen(NOW):
        auth = _world()[role]
        schema = _schema()
        # The credentials work: a fuzzer that only ever sees 401s would prove nothing.
        assert schema[own]["GET"].Case().call(**auth).status_code == 200
        checks = _checks()
        found, seen, reached, operations = [], Counter(), set(), 0
        for result in schema.get_all_operations():
            operation = result.ok()
            operations += 1
            try:
                _fuzz(operation, auth, checks, seen, reached)
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 — collect every finding, fail once
                if operation.label in KNOWN:
                    warnings.warn(
                        f"{operation.label} (known: {KNOWN[operation.label]}):\n{exc}", stacklevel=1
                    )
                else:
                    found.append(f"{operation.label}:\n{exc}")
        print(
            f"\n{role}: {operations} operations, {len(reached)} answered 2xx at least once; "
            f"responses by status {sorted(seen.items())}"
        )
        assert not found, f"{len(found)} operations failed as {role}:\n\n" + "\n\n".join(found)
        assert len(reached) >= MIN_REACHED[role], sorted(reached)  # requests reach real code paths


# ---------------------------------------------------------- issue 17: hostile values in every field

HOSTILE_INT = [2**63, 10**30, -(2**63) - 1, True, "1e2", "1_000", 1.5]
HOSTILE_TEXT = [
    "nul\x00here",
    "é" * 5000,
    '=HYPERLINK("http://evil.example")',
    "ＧＩＦＴ\u200b２０２６",
]
HOSTILE_DATE = [
    "9999-12-31",
    "0001-01-01",
    "9999-12-31T23:00:00-05:00",
    "0001-01-01T00:00:00+14:00",
]


def _first_case(operation):
    """One valid request for the operation (fixed seed), its path ids aimed at the seeded world."""
    cases = []

    @seed(SEED)
    @settings(
        max_examples=1,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(schemathesis.GenerationMode.POSITIVE))
    def grab(case):
        cases.append(case)

    grab()
    return _near(cases[0], True, 1)


def _hostile_for(value) -> list:
    """Hostile replacements for one value; a list of ids (tax_ids,
    patient_ids) gets one hostile id."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return HOSTILE_INT
    if isinstance(value, str):
        return HOSTILE_DATE if value[:4].isdigit() and value[4:5] == "-" else HOSTILE_TEXT
    if isinstance(value, list) and (not value or type(value[0]) is int):
        return [[bad, *value[1:]] for bad in HOSTILE_INT]
    return []


def _variants(case):
    """(where, the request with one field replaced by one hostile value), for every field: query
    parameters, body fields, and the fields of the first item of a list in the
    body (invoice lines)."""
    for key, value in (case.query or {}).items():
        for bad in _hostile_for(value):
            yield f"query {key}={bad!r:.40}", {"query": {**case.query, key: bad}}
    body = case.body if isinstance(case.body, dict) else {}
    for key, value in body.items():
        for bad in _hostile_for(value):
            yield f"body {key}={bad!r:.40}", {"body": {**body, key: bad}}
        if isinstance(value, list) and value and isinstance(value[0], dict):
            for inner, inner_value in value[0].items():
                for bad in _hostile_for(inner_value):
                    items = copy.deepcopy(value)
                    items[0][inner] = bad
                    yield f"body {key}[0].{inner}={bad!r:.40}", {"body": {**body, key: items}}


@pytest.mark.parametrize("role", ["owner", "patient"])
def test_hostile_values_in_every_field_never_give_a_5xx(
    role, _keep_connection, _gateway_in_rollback
):
    with clock.frozen(NOW):
        auth = _world()[role]
        schema = _schema()
        found, sent, refused = [], 0, Counter()
        for result in schema.get_all_operations():
            operation = result.ok()
            base = _first_case(operation)
            for where, change in _variants(base):
                case = operation.Case(
                    path_parameters=base.path_parameters,
                    query=change.get("query", base.query),
                    body=change.get("body", base.body),
                    media_type=base.media_type,
                    headers={k: v for k, v in (base.headers or {}).items() if k != "Authorization"},
                )
                with transaction.atomic():
                    try:
                        response = case.call(**auth)
                    finally:
                        transaction.set_rollback(True)
                sent += 1
                refused[response.status_code] += 1
                if response.status_code >= 500:
                    found.append(
                        f"{operation.label} {where}: {response.status_code} {response.text[:200]}"
                    )
        print(f"\n{role}: {sent} hostile requests, answers by status {sorted(refused.items())}")
        assert sent > 200  # the fields were found: a run that changes nothing proves nothing
        assert not found, f"{len(found)} hostile requests gave a 5xx as {role}:\n" + "\n".join(
            found
        )
