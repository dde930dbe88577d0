from django.urls import path

from .views import dashboard

app_name = "dashboard"

urlpatterns = [
    path("", dashboard.dashboard_page, name="page"),
    path("data.json", dashboard.dashboard_data, name="data"),
]
