from django.urls import path

from .views import bounces

app_name = "bounces"

urlpatterns = [
    path("", bounces.unmatched, name="unmatched"),
    path("<uuid:public_id>/", bounces.report_detail, name="report"),
    path("mailing/<uuid:public_id>/", bounces.mailing_bounces, name="mailing"),
]
