"""Idempotency for page forms: each rendered form carries a key that may be used once.

Call claim_form_key() inside the same transaction as the write it protects: a double
submit (two clicks, a reload) then finds the key taken and does nothing, and a write
that rolls back frees the key for a retry.
"""

import uuid

from django.db import IntegrityError, transaction

from . import clock
from .models import IdempotencyRecord


def new_form_key() -> str:
    return uuid.uuid4().hex


def claim_form_key(*, user, key: str) -> bool:
    """True the first time `key` is claimed for this user; False on a repeat."""
    if not key or len(key) > 255:
        return True  # an old form without a key: nothing to deduplicate against
    try:
        with transaction.atomic():
            IdempotencyRecord.objects.create(scope=f"form:{user.pk}", key=key, request_hash="", status_code=0,
                                             content_type="", body=b"", created_at=clock.now())
    except IntegrityError:
        return False
    return True
