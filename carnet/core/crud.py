"""The one generic write path for simple records: validate, save, log.

Services for set-up objects, staff and patients call model_save() inside their own
transaction; it never decides who may act (the caller's service checks permissions).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction

from . import activity
from .errors import Conflict, ValidationFailed, validation_from_django


def model_save(*, actor, obj: models.Model, data: dict, verb: str | None = None) -> models.Model:
    many = {f.name for f in obj._meta.many_to_many}
    m2m = {k: v for k, v in data.items() if k in many}
    for name, ids in m2m.items():
        ids = [getattr(i, "pk", i) for i in ids]
        related = obj._meta.get_field(name).related_model
        missing = set(ids) - set(related.objects.filter(pk__in=ids).values_list("pk", flat=True))
        if missing:
            raise ValidationFailed(f"No {related._meta.verbose_name} with id {', '.join(map(str, sorted(missing)))}.",
                                   fields={name: ["Unknown id."]})
        m2m[name] = ids
    before = activity.snapshot(obj) if obj.pk else None
    for name, value in data.items():
        if name not in many:
            setattr(obj, name, value)
    try:
        obj.full_clean()
    except ValidationError as exc:
        raise validation_from_django(exc) from None
    try:
        with transaction.atomic():
            obj.save()
    except IntegrityError:
        raise Conflict(f"Another {obj._meta.verbose_name} with these details already exists.",
                       code="already_exists") from None
    for name, value in m2m.items():
        getattr(obj, name).set(value)
    activity.record(actor=actor, verb=verb or ("updated" if before else "created"), obj=obj,
                    before=before, after=activity.snapshot(obj))
    return obj
