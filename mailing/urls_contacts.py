from django.urls import path

from .views import contacts as views
from .views import imports as import_views
from .views import suppressions as suppression_views

app_name = "contacts"

urlpatterns = [
    path("", views.index, name="index"),
    path("all/", views.all_contacts, name="all"),
    path("new/", views.contact_add, name="add"),
    path("<uuid:public_id>/", views.contact_edit, name="edit"),
    path("<uuid:public_id>/delete/", views.contact_delete, name="delete"),
    path("lists/new/", views.list_create, name="list_create"),
    path("lists/<uuid:public_id>/", views.list_detail, name="list"),
    path("lists/<uuid:public_id>/rename/", views.list_rename, name="list_rename"),
    path("lists/<uuid:public_id>/delete/", views.list_delete, name="list_delete"),
    path("fields/new/", views.field_add, name="field_add"),
    path("suppressions/", suppression_views.suppressions, name="suppressions"),
    path("suppressions/add/", suppression_views.suppression_add, name="suppression_add"),
    path("suppressions/remove/", suppression_views.suppression_remove, name="suppression_remove"),
    path("suppressions.csv", suppression_views.suppression_export, name="suppression_export"),
    path("imports/new/", import_views.import_upload, name="import_upload"),
    path("imports/<uuid:public_id>/", import_views.import_detail, name="import"),
    path("imports/<uuid:public_id>/mapping/", import_views.import_mapping, name="import_mapping"),
    path("imports/<uuid:public_id>/discard/", import_views.import_discard, name="import_discard"),
    path("imports/<uuid:public_id>.json", import_views.import_json, name="import_json"),
    path("imports/<uuid:public_id>/rejected.csv", import_views.import_rejections, name="import_rejections"),
]
