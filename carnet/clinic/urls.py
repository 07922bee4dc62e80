from django.urls import path

from . import views

app_name = "clinic"
urlpatterns = [
    path("settings/", views.settings_index, name="settings"),
    path("settings/clinic/", views.clinic_settings_view, name="clinic_settings"),
    path("settings/<slug:kind>/", views.setup_list_view, name="setup_list"),
    path("settings/<slug:kind>/new/", views.setup_edit_view, name="setup_new"),
    path("settings/<slug:kind>/<int:pk>/", views.setup_edit_view, name="setup_edit"),
]
