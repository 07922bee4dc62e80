"""The one generic write path for simple records: validate, save, log.

Services for set-up objects, staff and patients call model_save() inside their own
transaction; it never decides who may act (the caller's service checks permissions).
"""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, models, transaction

from . import activity
from .errors import Conflict, ValidationFailed, validation_from_django


def _input_names(obj: models.Model, data: dict, aliases: dict[str, str] | None) -> dict[str, str]:
    """Model field name -> the name the caller used, so errors name the field that was sent
    (`income_category_id` rather than `income_category`, or an alias such as `tax_ids`)."""
    names = dict(aliases or {})
    for field in obj._meta.concrete_fields:
        if field.is_relation and field.attname in data and field.name not in data:
            names.setdefault(field.name, field.attname)
    return names


def _quantize_decimals(obj: models.Model) -> None:
    """Give decimals the places the column stores (5 -> 5.000), so the saved object, its log
    entry and the API response show what a later read will show."""
    for field in obj._meta.concrete_fields:
        value = getattr(obj, field.attname)
        if isinstance(field, models.DecimalField) and isinstance(value, Decimal):
            setattr(obj, field.attname, value.quantize(Decimal(1).scaleb(-field.decimal_places)))


def model_save(
    *,
    actor,
    obj: models.Model,
    data: dict,
    verb: str | None = None,
    aliases: dict[str, str] | None = None,
) -> models.Model:
    """`aliases` maps a model field name to the input name the caller's user knows it by."""
    names = _input_names(obj, data, aliases)
    for name, value in data.items():
        if (
            isinstance(value, str) and "\x00" in value
        ):  # PostgreSQL text cannot hold NUL: a 500 otherwise
            shown = names.get(name, name)
            raise ValidationFailed(
                f"Please correct {shown.replace('_', ' ')}: null characters are not allowed.",
                fields={shown: ["Null characters are not allowed."]},
            )
    many = {f.name for f in obj._meta.many_to_many}
    m2m = {k: v for k, v in data.items() if k in many}
    for name, ids in m2m.items():
        shown = names.get(name, name)
        if ids is None:
            raise ValidationFailed(
                f"Please correct {shown.replace('_', ' ')}: give a list, possibly empty.",
                fields={shown: ["This field cannot be null."]},
            )
        ids = [getattr(i, "pk", i) for i in ids]
        related = obj._meta.get_field(name).related_model
        # An id beyond the key column's range exists nowhere
        # (SQLite cannot even be asked: OverflowError).
        asked = ids
        if isinstance(related._meta.pk, models.IntegerField):
            low, high = connection.ops.integer_field_range(related._meta.pk.get_internal_type())
            asked = [i for i in ids if not isinstance(i, int) or low <= i <= high]
        missing = set(ids) - set(related.objects.filter(pk__in=asked).values_list("pk", flat=True))
        if missing:
            raise ValidationFailed(
                f"No {related._meta.verbose_name} with id {', '.join(map(str, sorted(missing)))}.",
                fields={shown: ["Unknown id."]},
            )
        m2m[name] = ids
    before = activity.snapshot(obj) if obj.pk else None
    for name, value in data.items():
        if name not in many:
            setattr(obj, name, value)
    try:
        obj.full_clean()
    except ValidationError as exc:
        raise validation_from_django(exc, names=names) from None
    _quantize_decimals(obj)
    try:
        with transaction.atomic():
            obj.save()
    except IntegrityError:
        raise Conflict(
            f"Another {obj._meta.verbose_name} with these details already exists.",
            code="already_exists",
        ) from None
    for name, value in m2m.items():
        getattr(obj, name).set(value)
    activity.record(
        actor=actor,
        verb=verb or ("updated" if before else "created"),
        obj=obj,
        before=before,
        after=activity.snapshot(obj),
    )
    return obj
