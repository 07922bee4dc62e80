"""Settings → Packages & Memberships. Included before carnet.clinic.urls, whose
`settings/<slug:kind>/` would otherwise take `settings/passes/`."""

from django.urls import path

from . import views

app_name = "pass_templates"
urlpatterns = [
    path("settings/passes/", views.template_list, name="list"),
    path("settings/passes/new/", views.template_edit, name="new"),
    path("settings/passes/<int:pk>/", views.template_edit, name="edit"),
    path("settings/passes/<int:pk>/archive/", views.template_archive_view, name="archive"),
    path("settings/passes/<int:pk>/update-sold/", views.sold_update_view, name="sold_update"),
]
