from django.urls import path

from . import views

app_name = "giftcards"
urlpatterns = [
    path("gift-cards/", views.giftcard_list, name="list"),
    path("gift-cards/new/", views.giftcard_new, name="new"),
    path("gift-cards/<int:pk>/", views.giftcard_detail, name="detail"),
    path("gift-cards/<int:pk>/reload/", views.giftcard_reload, name="reload"),
    path("gift-cards/<int:pk>/transfer/", views.giftcard_transfer, name="transfer"),
    path("gift-cards/<int:pk>/refund/", views.giftcard_refund, name="refund"),
    path("gift-cards/<int:pk>/delete/", views.giftcard_delete, name="delete"),
    path("gift-cards/<int:pk>/notes/", views.giftcard_notes, name="notes"),
]
