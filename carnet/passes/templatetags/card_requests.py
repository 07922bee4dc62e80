"""{% card_request_open sold as req %} and {% card_requests_open patient as reqs %}: card update
requests still waiting for a card (issue 22 point 3), with `label`
("Card update requested (sent …)")."""

from django import template

from carnet.passes.memberships.card_requests import card_request_label, card_requests_open_for
from carnet.passes.memberships.card_requests import card_request_open as open_one

register = template.Library()


@register.simple_tag
def card_request_open(sold):

    req = open_one(sold)
    if req is not None:
        req.label = card_request_label(req)
    return req


@register.simple_tag
def card_requests_open(patient):

    reqs = card_requests_open_for(patient)
    for req in reqs:
        req.label = card_request_label(req)
    return reqs
