"""Every protected action and the lowest access level allowed to do it (SPEC section 8).

This table is the only place access rules are declared. Pages (`core.pages.staff_required`)
and API handlers (`require`) check it on the server; `tests/test_access_matrix.py` walks it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from django.db import models

from .errors import NotAllowed


class AccessLevel(models.IntegerChoices):
    NO_ACCESS = 0, "No Access"
    PRACTITIONER_LIMITED = 10, "Practitioner (Limited)"
    PRACTITIONER_FRONT_DESK = 20, "Practitioner/Front Desk"
    PRACTITIONER_FRONT_DESK_ALL = 30, "Practitioner/Front Desk (All Locations)"
    FRONT_DESK = 40, "Front Desk"
    ADMIN_BILLING = 50, "Administrative/All Billing"
    FULL_ACCESS = 60, "Full Access"
    ACCOUNT_OWNER = 70, "Account Owner"


class Action(enum.StrEnum):
    DASHBOARD_VIEW = "dashboard_view"
    SCHEDULE_OWN = "schedule_own"
    SCHEDULE_LOCATION = "schedule_location"
    SCHEDULE_ALL_LOCATIONS = "schedule_all_locations"
    PATIENT_VIEW = "patient_view"
    PATIENT_EDIT = "patient_edit"
    SETUP_VIEW = "setup_view"
    SETUP_MANAGE = "setup_manage"
    INVOICE_VIEW = "invoice_view"
    SELL = "sell"
    PAYMENT_TAKE = "payment_take"
    PAYMENT_UNAPPLY = "payment_unapply"
    PAYMENT_UNAPPLY_OLD = "payment_unapply_old"
    REFUND = "refund"
    INVOICE_DELETE = "invoice_delete"
    PASS_EXPIRY_EDIT = "pass_expiry_edit"
    PASS_USE = "pass_use"
    PASS_TRANSFER = "pass_transfer"
    INTRO_OFFER_OVERRIDE = "intro_offer_override"
    REPORTS_OWN = "reports_own"
    REPORTS_CLINIC = "reports_clinic"
    CLINIC_SETTINGS = "clinic_settings"
    GIFT_CARD_SETTINGS = "gift_card_settings"
    STAFF_VIEW = "staff_view"
    STAFF_MANAGE = "staff_manage"
    ACTIVITY_LOG_VIEW = "activity_log_view"
    DATA_IMPORT = "data_import"
    ACCOUNTING_EXPORT = "accounting_export"
    CARD_REVIEW = "card_review"
    API_TOKEN_OWN = "api_token_own"
    ACCOUNT_OWN = "account_own"
    OWNERSHIP = "ownership"


@dataclass(frozen=True)
class Rule:
    level: AccessLevel
    billing: bool  # also needs the staff member's "can access billing" switch
    what: str  # how the refusal message names the action


L = AccessLevel
RULES: dict[Action, Rule] = {
    Action.DASHBOARD_VIEW: Rule(L.PRACTITIONER_LIMITED, False, "use Carnet"),
    Action.SCHEDULE_OWN: Rule(
        L.PRACTITIONER_LIMITED, False, "book and arrive on your own schedule"
    ),
    Action.SCHEDULE_LOCATION: Rule(
        L.PRACTITIONER_FRONT_DESK, False, "book and arrive at your locations"
    ),
    Action.SCHEDULE_ALL_LOCATIONS: Rule(
        L.PRACTITIONER_FRONT_DESK_ALL, False, "book and arrive at every location"
    ),
    Action.PATIENT_VIEW: Rule(L.PRACTITIONER_FRONT_DESK, False, "look up patients"),
    Action.PATIENT_EDIT: Rule(L.PRACTITIONER_FRONT_DESK, False, "add or edit patients"),
    Action.SETUP_VIEW: Rule(L.PRACTITIONER_FRONT_DESK, False, "see the clinic set-up"),
    Action.SETUP_MANAGE: Rule(
        L.ADMIN_BILLING, False, "set up treatments, products, packages, memberships and taxes"
    ),
    Action.INVOICE_VIEW: Rule(L.PRACTITIONER_FRONT_DESK, True, "see invoices and prices"),
    Action.SELL: Rule(L.FRONT_DESK, True, "sell packages, memberships, products and gift cards"),
    Action.PAYMENT_TAKE: Rule(L.FRONT_DESK, True, "take payments"),
    Action.PAYMENT_UNAPPLY: Rule(L.ADMIN_BILLING, True, "unapply payments"),
    Action.PAYMENT_UNAPPLY_OLD: Rule(
        L.FULL_ACCESS, True, "unapply a payment received more than 24 hours ago"
    ),
    Action.REFUND: Rule(L.ADMIN_BILLING, True, "refund"),
    Action.INVOICE_DELETE: Rule(L.ADMIN_BILLING, True, "delete invoices"),
    Action.PASS_EXPIRY_EDIT: Rule(L.ADMIN_BILLING, True, "change a sold pass's expiry date"),
    # Attaching a pass is part of booking (scoped like booking);
    # it needs the billing switch (SPEC 8).
    Action.PASS_USE: Rule(
        L.PRACTITIONER_LIMITED, True, "use packages and memberships on appointments"
    ),
    Action.PASS_TRANSFER: Rule(L.ADMIN_BILLING, True, "transfer a pass to another patient"),
    Action.INTRO_OFFER_OVERRIDE: Rule(
        L.ADMIN_BILLING, True, "sell an intro offer to a patient it is not for"
    ),
    Action.REPORTS_OWN: Rule(L.PRACTITIONER_LIMITED, False, "see your own reports"),
    Action.REPORTS_CLINIC: Rule(L.ADMIN_BILLING, True, "see billing reports for the whole clinic"),
    Action.CLINIC_SETTINGS: Rule(L.FULL_ACCESS, False, "change clinic settings and locations"),
    Action.GIFT_CARD_SETTINGS: Rule(L.FULL_ACCESS, False, "change gift-card settings"),
    Action.STAFF_VIEW: Rule(L.ADMIN_BILLING, False, "see the staff list"),
    Action.STAFF_MANAGE: Rule(L.FULL_ACCESS, False, "add staff or change access levels"),
    Action.ACTIVITY_LOG_VIEW: Rule(L.FULL_ACCESS, False, "browse the activity log"),
    Action.DATA_IMPORT: Rule(L.FULL_ACCESS, False, "import data from another system"),
    Action.ACCOUNTING_EXPORT: Rule(
        L.ADMIN_BILLING, True, "export the ledger to your accounting software"
    ),
    Action.CARD_REVIEW: Rule(
        L.ADMIN_BILLING, True, "review card payments whose outcome was found by reconciliation"
    ),
    Action.API_TOKEN_OWN: Rule(L.PRACTITIONER_LIMITED, False, "create API tokens for yourself"),
    Action.ACCOUNT_OWN: Rule(
        L.PRACTITIONER_LIMITED, False, "change your own password and sign-in settings"
    ),
    Action.OWNERSHIP: Rule(L.ACCOUNT_OWNER, False, "manage the subscription and account ownership"),
}


def allows(level: int, billing: bool, action: Action) -> bool:
    rule = RULES[action]
    return level >= rule.level and (billing or not rule.billing)


def staff_of(actor):
    """The active staff member behind a user (or the staff member itself); None for patients."""
    if actor is None:
        return None
    staff = actor if hasattr(actor, "access_level") else getattr(actor, "staff", None)
    if staff is None or not staff.is_active:
        return None
    return staff


def can(actor, action: Action) -> bool:
    """`actor` is a User or a StaffMember; patients and anonymous users can do no staff action."""
    staff = staff_of(actor)
    return staff is not None and allows(staff.access_level, staff.can_access_billing, action)


def require(actor, action: Action) -> None:
    if can(actor, action):
        return
    staff = staff_of(actor)
    rule = RULES[action]
    if staff is None:
        raise NotAllowed(f"Only clinic staff can {rule.what}. Log in with a staff account.")
    if staff.access_level >= rule.level and rule.billing:
        raise NotAllowed(
            f"You are not allowed to {rule.what}: your account does not have billing access. "
            "Ask someone with Full Access to turn on “can access billing”."
        )
    raise NotAllowed(
        f"You are not allowed to {rule.what} with your access level "
        f"({AccessLevel(staff.access_level).label}). It needs {rule.level.label} or higher; "
        "ask someone with Full Access to change your access level."
    )
