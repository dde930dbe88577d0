from django.urls import path

from . import views

app_name = "servers"

urlpatterns = [
    path("", views.server_list, name="list"),
    path("add/", views.server_add, name="add"),
    path("reorder/", views.server_reorder, name="reorder"),
    path("<uuid:public_id>/", views.server_edit, name="edit"),
    path("<uuid:public_id>/delete/", views.server_delete, name="delete"),
    path("<uuid:public_id>/toggle/", views.server_toggle, name="toggle"),
    path("<uuid:public_id>/move/", views.server_move, name="move"),
    path("<uuid:public_id>/test/", views.server_test, name="test_start"),
    path("<uuid:public_id>/mailbox/test/", views.server_mailbox_test, name="server_mailbox_test"),
    path("bounce-mailbox/", views.mailbox_edit, name="mailbox"),
    path("bounce-mailbox/delete/", views.mailbox_delete, name="mailbox_delete"),
    path("bounce-mailbox/test/", views.mailbox_test, name="mailbox_test"),
    path("tests/<uuid:public_id>/", views.test_detail, name="test"),
    path("tests/<uuid:public_id>.json", views.test_json, name="test_json"),
]
