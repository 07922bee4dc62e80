from django.urls import path

from . import views

app_name = "giftcards"
urlpatterns = [
    path("gift-cards/", views.gift_card_list, name="list"),
    path("gift-cards/new/", views.gift_card_new, name="new"),
    path("gift-cards/<int:pk>/", views.gift_card_detail, name="detail"),
    path("gift-cards/<int:pk>/reload/", views.gift_card_reload, name="reload"),
    path("gift-cards/<int:pk>/transfer/", views.gift_card_transfer, name="transfer"),
    path("gift-cards/<int:pk>/refund/", views.gift_card_refund, name="refund"),
    path("gift-cards/<int:pk>/delete/", views.gift_card_delete, name="delete"),
    path("gift-cards/<int:pk>/notes/", views.gift_card_notes, name="notes"),
]
