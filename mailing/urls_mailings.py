from django.urls import path

from .views import mailings, mailings_live

app_name = "mailings"

urlpatterns = [
    path("", mailings.mailing_list, name="list"),
    path("live.json", mailings_live.mailings_live, name="list_live"),
    path("new/", mailings.mailing_new, name="new"),
    path("<uuid:public_id>/", mailings.mailing_detail, name="detail"),
    path("<uuid:public_id>/edit/", mailings.mailing_edit, name="edit"),
    path("<uuid:public_id>/live.json", mailings_live.mailing_live, name="live"),
    path("<uuid:public_id>/<slug:action>/", mailings.mailing_action, name="action"),
]
