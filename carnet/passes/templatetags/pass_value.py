"""How pages name what a package holds and what is left of it: uses, or money for a package that
holds a value (issue 23), never "sessions" for those. `{% load pass_value %}`, then
`{{ template_or_pass|holds }}` ("10 uses", "$1,000.00 of treatments", "unlimited uses") and
`{{ pass|left }}` ("7 uses left", "$910.00 left", "unlimited"). The words come from
`passes.documents`, which forms use too."""

from django import template

from carnet.passes.documents import holds_text, left_text

register = template.Library()


register.filter("holds", holds_text)
register.filter("left", left_text)
