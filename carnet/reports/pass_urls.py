urlpatterns = []  # pass reports (pass_views.py)
