"""How pages name what a package holds and what is left of it: uses, or money for a package that
holds a value (issue 23), never "sessions" for those. `{% load pass_value %}`, then
`{{ template_or_pass|holds }}` ("10 uses", "$1,000.00 of treatments", "unlimited uses") and
`{{ pass|left }}` ("7 uses left", "$910.00 left", "unlimited")."""

from django import template

from carnet.clinic.selectors import money_text

register = template.Library()


def holds_text(obj) -> str:
    if getattr(obj, "face_value_minor", None) is not None:
        return f"{money_text(obj.face_value_minor)} of treatments"
    quantity = getattr(obj, "quantity", None)
    if quantity:
        return f"{quantity} use{'s' if quantity != 1 else ''}"
    return "unlimited uses"


def left_text(sold) -> str:
    if sold.face_value_minor is not None:
        return f"{money_text(max(sold.value_left, 0))} left"
    if sold.remaining is None:
        return "unlimited"
    return f"{sold.remaining} left"


register.filter("holds", holds_text)
register.filter("left", left_text)
