from django.urls import path

from .views import mailings

app_name = "mailings"

urlpatterns = [
    path("", mailings.mailing_list, name="list"),
    path("new/", mailings.mailing_new, name="new"),
    path("<uuid:public_id>/", mailings.mailing_detail, name="detail"),
    path("<uuid:public_id>/edit/", mailings.mailing_edit, name="edit"),
    path("<uuid:public_id>/state.json", mailings.mailing_state, name="state"),
    path("<uuid:public_id>/<slug:action>/", mailings.mailing_action, name="action"),
]
