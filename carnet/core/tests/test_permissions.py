"""The declared rules match SPEC section 8's table, row by row."""

import pytest

from carnet.core.errors import NotAllowed
from carnet.core.permissions import RULES, AccessLevel, Action, allows, can, require

L = AccessLevel

# SPEC section 8: action -> (lowest level, needs "can access billing").
SPEC_TABLE = {
    Action.SCHEDULE_LOCATION: (L.PRACTITIONER_FRONT_DESK, False),
    Action.SCHEDULE_OWN: (L.PRACTITIONER_LIMITED, False),
    Action.SELL: (L.FRONT_DESK, True),
    Action.PAYMENT_TAKE: (L.FRONT_DESK, True),
    Action.SETUP_MANAGE: (L.ADMIN_BILLING, False),
    Action.PAYMENT_UNAPPLY: (L.ADMIN_BILLING, True),
    Action.REFUND: (L.ADMIN_BILLING, True),
    Action.INVOICE_DELETE: (L.ADMIN_BILLING, True),
    Action.PASS_EXPIRY_EDIT: (L.ADMIN_BILLING, True),
    Action.PAYMENT_UNAPPLY_OLD: (L.FULL_ACCESS, True),
    Action.REPORTS_CLINIC: (L.ADMIN_BILLING, True),
    Action.REPORTS_OWN: (L.PRACTITIONER_LIMITED, False),
    Action.CLINIC_SETTINGS: (L.FULL_ACCESS, False),
    Action.GIFT_CARD_SETTINGS: (L.FULL_ACCESS, False),
    Action.STAFF_MANAGE: (L.FULL_ACCESS, False),
    Action.OWNERSHIP: (L.ACCOUNT_OWNER, False),
}


@pytest.mark.parametrize("action", list(SPEC_TABLE), ids=str)
def test_rule_matches_spec_table(action):
    level, billing = SPEC_TABLE[action]
    assert (RULES[action].level, RULES[action].billing) == (level, billing)


@pytest.mark.parametrize("action", list(Action), ids=str)
def test_lowest_level_is_exactly_the_threshold(action):
    rule = RULES[action]
    for lv in AccessLevel:
        assert allows(lv, True, action) == (lv >= rule.level)
        assert allows(lv, False, action) == (lv >= rule.level and not rule.billing)


def test_every_action_has_a_rule():
    assert set(RULES) == set(Action)


class FakeStaff:
    def __init__(self, level, billing=True, active=True):
        self.access_level, self.can_access_billing, self.is_active = level, billing, active


def test_refusal_names_the_needed_level():
    with pytest.raises(NotAllowed) as exc:
        require(FakeStaff(L.FRONT_DESK), Action.SETUP_MANAGE)
    assert "Administrative/All Billing" in exc.value.message and "Front Desk" in exc.value.message


def test_refusal_for_missing_billing_access_says_so():
    with pytest.raises(NotAllowed) as exc:
        require(FakeStaff(L.FULL_ACCESS, billing=False), Action.SELL)
    assert "billing access" in exc.value.message


def test_inactive_staff_and_non_staff_can_do_nothing():
    assert not can(FakeStaff(L.ACCOUNT_OWNER, active=False), Action.DASHBOARD_VIEW)
    assert not can(None, Action.DASHBOARD_VIEW)
    with pytest.raises(NotAllowed):
        require(None, Action.PATIENT_VIEW)
