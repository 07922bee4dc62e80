from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from carnet.ledger import invariants


def run_check():
    out = StringIO()
    call_command("ledger_check", stdout=out, no_color=True)
    return out.getvalue()


@pytest.fixture
def broken_invariant():
    name = "test: gift cards match their ledger"
    invariants.invariant(name)(lambda: ["gift card #3: 500 on the card, 400 in the ledger"])
    yield name
    invariants.registry.pop(name)


def test_a_clean_ledger_passes(db):
    # Empty, so that every app's invariants hold (other apps reconcile the
    # ledger with their records).
    out = run_check()
    for name in ("transactions balance", "liabilities not negative", "accounts have a known type"):
        assert f"OK    {name}" in out


def test_a_failing_invariant_is_named_and_the_command_fails(db, broken_invariant):
    out = StringIO()
    with pytest.raises(CommandError, match=broken_invariant) as failed:
        call_command("ledger_check", stdout=out, no_color=True)
    assert failed.value.returncode == 1
    assert f"FAIL  {broken_invariant} (1)" in out.getvalue()
    assert "gift card #3: 500 on the card, 400 in the ledger" in out.getvalue()
    assert "OK    transactions balance" in out.getvalue()
