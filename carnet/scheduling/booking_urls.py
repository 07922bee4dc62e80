from django.urls import path

from . import booking_views

app_name = "booking"
urlpatterns = [
    path("", booking_views.start, name="start"),
    path("<int:location_id>/", booking_views.book, name="book"),
    path("<int:location_id>/confirm/", booking_views.confirm, name="confirm"),
    path("sign-up/sent/", booking_views.sign_up_sent, name="sign_up_sent"),
]
