from django.urls import path

from . import account_views, session_views, two_factor_views, views

app_name = "staff"
urlpatterns = [
    path("", views.home, name="dashboard"),
    path("login/", views.login_view, name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("password-reset/", account_views.password_reset, name="password_reset"),
    path(
        "password-reset/<str:token>/",
        account_views.password_reset_confirm,
        name="password_reset_confirm",
    ),
    path("account/password/", account_views.password_change, name="password_change"),
    path("login/code/", two_factor_views.verify, name="two_factor_verify"),
    path("account/two-factor/", two_factor_views.settings_view, name="two_factor"),
    path("account/sessions/", session_views.sessions, name="sessions"),
    path("activity/", views.activity_log, name="activity"),
    path("account/tokens/", views.tokens, name="tokens"),
    path("account/tokens/<int:pk>/revoke/", views.token_revoke, name="token_revoke"),
]
