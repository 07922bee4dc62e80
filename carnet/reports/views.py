"""The Reports page: links to each report the signed-in staff member may open."""

from django.shortcuts import render
from django.urls import resolve, reverse

from carnet.core.pages import staff_required
from carnet.core.permissions import Action, can

from . import billing_views, pass_views


@staff_required(Action.REPORTS_OWN)
def report_index(request):
    return render(
        request,
        "reports/index.html",
        {
            # Only the reports this person may open (the roll-forward is whole-clinic only).
            "reports": [
                r
                for r in [*pass_views.REPORTS, *billing_views.REPORTS]
                if can(request.user, resolve(reverse(r[0])).func.required_action)
            ],
            "whole_clinic": can(request.user, Action.REPORTS_CLINIC),
        },
    )
