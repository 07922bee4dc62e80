urlpatterns = []  # billing reports (billing_views.py)
