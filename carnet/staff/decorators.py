"""Moved to `carnet.core.pages` (page plumbing sits below every app). This name stays only while
the passes modules still import it; it goes when they import `carnet.core.pages`."""

from carnet.core.pages import (  # noqa: F401
    apply_errors,
    not_allowed,
    run_action,
    save_form,
    save_once,
    staff_required,
)
