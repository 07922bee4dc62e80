"""{% membership_summary p as m %}: a membership's uses this cycle, next billing date and amount
owing, for the lists that show it (the patient's Packages & Memberships)."""

from django import template

from carnet.passes.memberships.views import membership_summary as summary

register = template.Library()


@register.simple_tag(takes_context=True)
def membership_summary(context, sold):

    return summary(sold, today=context.get("today"))  # the view reads today once for the whole list
