"""The schema's description of our authentication (drf-spectacular finds
this extension once it is imported: mailing.api.urls does)."""

from django.utils.translation import gettext
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "mailing.api.auth.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": gettext("An API key from Organisation settings → API keys: `Authorization: Bearer pr_…`."),
        }
