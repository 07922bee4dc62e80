"""Who a refused staff member should ask (the "Not allowed" page names them)."""

from django import template

from carnet.core.permissions import staff_of
from carnet.people.selectors import staff_who_manage_access

register = template.Library()


@register.simple_tag(takes_context=True)
def who_manages_access(context) -> str:
    """The names of the staff who can change access levels, the viewer left out ("" if none)."""
    request = context.get("request")
    me = staff_of(request.user) if request is not None else None
    names = [s.display_name for s in staff_who_manage_access(exclude=me)]
    if len(names) > 1:
        return f"{', '.join(names[:-1])} or {names[-1]}"
    return names[0] if names else ""
