from django.urls import path

from . import views

app_name = "portal"
urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.portal_login, name="login"),
    path("password-reset/", views.password_reset, name="password_reset"),
    path(
        "password-reset/<str:token>/", views.password_reset_confirm, name="password_reset_confirm"
    ),
    path("account/password/", views.password_change, name="password_change"),
    path("login/code/", views.two_factor_verify, name="two_factor_verify"),
    path("account/two-factor/", views.two_factor, name="two_factor"),
    path("account/sessions/", views.sessions, name="sessions"),
    # Public: the signed invitation link is the patient's only credential until
    # they choose a password.
    path("invitation/<str:token>/", views.invitation, name="invitation"),
    # Public: the signed link from an online sign-up's email proves the address;
    # it creates the login.
    path("sign-up/<str:token>/", views.sign_up_confirm, name="sign_up_confirm"),
    path("gift-cards/buy/", views.gift_card_buy, name="gift_card_buy"),
    path("passes/", views.passes, name="passes"),
    path("passes/buy/<int:pk>/", views.pass_buy, name="pass_buy"),
    path("passes/<int:pk>/bought/", views.pass_bought, name="pass_bought"),
    path("memberships/sign-up/<int:pk>/", views.membership_sign_up, name="membership_sign_up"),
    path("memberships/<int:pk>/cancel/", views.membership_cancel, name="membership_cancel"),
    path("memberships/<int:pk>/pause/", views.membership_pause, name="membership_pause"),
    path("memberships/<int:pk>/resume/", views.membership_resume, name="membership_resume"),
    path("appointments/<int:pk>/cancel/", views.appointment_cancel, name="appointment_cancel"),
    path("receipts/<int:pk>.pdf", views.receipt_pdf, name="receipt_pdf"),
    # Public: the signed token in the link is the patient's only credential.
    path("pay/<str:token>/", views.pay_balance, name="pay_balance"),
    path("pay/<str:token>/paid/<int:payment_pk>/", views.pay_balance_paid, name="pay_balance_paid"),
    # Public: a card update request's signed link (issue 22) is the patient's credential for
    # that membership only.
    path("card/<str:token>/", views.card_update, name="card_update"),
    path("card/<str:token>/done/", views.card_update_done, name="card_update_done"),
]
