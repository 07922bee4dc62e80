"""{% membership_summary p as m %}: a membership's uses this cycle, next billing date and amount
owing, for the lists that show it (the patient's Packages & Memberships)."""

from django import template

register = template.Library()


@register.simple_tag
def membership_summary(sold):
    from carnet.passes.membership_views import membership_summary as summary

    return summary(sold)
