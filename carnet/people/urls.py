from django.urls import path

from . import views

app_name = "people"
urlpatterns = [
    path("patients/", views.patient_list, name="patients"),
    path("patients/new/", views.patient_edit, name="patient_new"),
    path("patients/<int:pk>/", views.patient_profile, name="patient"),
    path("patients/<int:pk>/edit/", views.patient_edit, name="patient_edit"),
    path("patients/<int:pk>/family/", views.family_add, name="family_add"),
    path(
        "patients/<int:pk>/family/<int:link_pk>/remove/", views.family_remove, name="family_remove"
    ),
    path("patients/<int:pk>/portal-invitation/", views.portal_invite, name="portal_invite"),
    path("staff/", views.staff_list, name="staff"),
    path("staff/new/", views.staff_new, name="staff_new"),
    path("staff/<int:pk>/", views.staff_edit, name="staff_edit"),
    path("staff/<int:pk>/shifts/", views.shift_add, name="shift_add"),
    path("staff/<int:pk>/shifts/<int:shift_pk>/remove/", views.shift_remove, name="shift_remove"),
    path("staff/<int:pk>/rates/", views.rate_set, name="rate_set"),
    path("staff/<int:pk>/unlock/", views.staff_unlock, name="staff_unlock"),
    path(
        "staff/<int:pk>/two-factor/reset/",
        views.staff_two_factor_reset,
        name="staff_two_factor_reset",
    ),
]
