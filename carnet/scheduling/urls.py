from django.urls import path

from . import views

app_name = "scheduling"
A = "appointments/<int:pk>/"
urlpatterns = [
    path("schedule/", views.schedule, name="schedule"),
    path("schedule/book/", views.book, name="book"),
    path("schedule/book/patients/", views.book_patients, name="book_patients"),
    path("schedule/book/quote/", views.book_quote, name="book_quote"),
    path(A, views.appointment, name="appointment"),
    path(A + "arrive/", views.appointment_arrive, name="appointment_arrive"),
    path(A + "unarrive/", views.appointment_unarrive, name="appointment_unarrive"),
    path(A + "no-show/", views.appointment_no_show, name="appointment_no_show"),
    path(A + "no-show/undo/", views.appointment_no_show_undo, name="appointment_no_show_undo"),
    path(A + "cancel/", views.appointment_cancel, name="appointment_cancel"),
    path(A + "copy/", views.appointment_copy, name="appointment_copy"),
    path(A + "reschedule/", views.appointment_reschedule, name="appointment_reschedule"),
    path(A + "visits/", views.appointment_join, name="appointment_join"),
    path(
        A + "duplicate-as-class/",
        views.appointment_duplicate_as_class,
        name="appointment_duplicate_as_class",
    ),
    path(A + "package/", views.appointment_pass_use, name="appointment_pass_use"),
    path(A + "package/remove/", views.appointment_pass_remove, name="appointment_pass_remove"),
    path(A + "package/explain/", views.appointment_pass_explain, name="appointment_pass_explain"),
    path(
        "patients/<int:pk>/appointments/", views.patient_appointments, name="patient_appointments"
    ),
]
