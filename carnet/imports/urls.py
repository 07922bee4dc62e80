from django.urls import path

from . import views

app_name = "imports"
urlpatterns = [
    path("imports/", views.import_index, name="index"),
    path("imports/template/", views.import_template, name="template"),
    path("imports/files/<int:pk>/", views.import_file, name="file"),
    path("imports/files/<int:pk>/commit/", views.import_commit, name="commit"),
    path("imports/<int:pk>/undo/", views.import_undo, name="undo"),
]
