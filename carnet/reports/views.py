"""The Reports page: links to each report the signed-in staff member may open."""

from django.shortcuts import render

from carnet.core.pages import staff_required
from carnet.core.permissions import Action, can

from . import billing_views, pass_views


@staff_required(Action.REPORTS_OWN)
def report_index(request):
    return render(
        request,
        "reports/index.html",
        {
            "reports": [*pass_views.REPORTS, *billing_views.REPORTS],
            "whole_clinic": can(request.user, Action.REPORTS_CLINIC),
        },
    )
