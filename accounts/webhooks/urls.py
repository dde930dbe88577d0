from django.urls import path

from . import views

app_name = "webhooks"

urlpatterns = [
    path("", views.endpoints, name="list"),
    path("<uuid:public_id>/", views.endpoint, name="detail"),
    path("<uuid:public_id>/enabled/", views.endpoint_enabled, name="enabled"),
    path("<uuid:public_id>/rotate/", views.endpoint_rotate, name="rotate"),
    path("<uuid:public_id>/test/", views.endpoint_test, name="test"),
    path("<uuid:public_id>/delete/", views.endpoint_delete, name="delete"),
]
