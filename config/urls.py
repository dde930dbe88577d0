from django.conf import settings
from django.contrib import admin
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.templatetags.static import static
from django.urls import include, path
from django.utils.translation import gettext_lazy as _
from django.views.i18n import JavaScriptCatalog

from accounts.staff import StaffAdminSite
from accounts.views.tenants import home
from mailing.views.unsubscribe import unsubscribe

# Staff must pass a verified OTP device to enter the admin, and log in with
# email, password and code in one throttled step.
admin.site.__class__ = StaffAdminSite
admin.site.site_header = _("Postroute staff")
admin.site.site_title = _("Postroute staff")


@login_not_required
def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for it on pages that name no icon (the admin, plain
    errors). Looked up per request: the manifest exists only after collectstatic."""
    return HttpResponseRedirect(static("img/favicon.svg"))


# Under /api/ a server error is a problem document too (mailing.api.problems).
handler500 = "mailing.api.problems.server_error"

urlpatterns = [
    path("", home, name="home"),
    path("accounts/", include("accounts.urls")),
    path("servers/", include("servers.urls")),
    path("contacts/", include("mailing.urls_contacts")),
    path("templates/", include("mailing.urls_templates")),
    path("mailings/", include("mailing.urls_mailings")),
    path("bounces/", include("mailing.urls_bounces")),
    path("dashboard/", include("mailing.urls_dashboard")),
    path("api/", include("mailing.api.urls")),
    path("u/<str:token>/", unsubscribe, name="unsubscribe"),
    # The strings of static/js in the page's language (djangojs catalogue).
    path("jsi18n/", login_not_required(JavaScriptCatalog.as_view()), name="javascript_catalog"),
    path("favicon.ico", favicon),
    path(settings.ADMIN_URL, admin.site.urls),
]
