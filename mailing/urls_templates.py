from django.urls import path

from .views import templates as views

app_name = "templates"

urlpatterns = [
    path("", views.template_list, name="list"),
    path("add/", views.template_add, name="add"),
    path("<uuid:public_id>/", views.template_edit, name="edit"),
    path("<uuid:public_id>/delete/", views.template_delete, name="delete"),
    path("<uuid:public_id>/preview/", views.template_preview, name="preview"),
    path("<uuid:public_id>/preview/html/", views.template_preview_html, name="preview_html"),
]
