"""The schema's description of our authentication (drf-spectacular finds
this extension once it is imported: mailing.api.urls does) and of our
refusals (a postprocessing hook, SPECTACULAR_SETTINGS); the view that
serves it."""

from django.utils.translation import gettext
from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerFieldExtension
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.renderers import JSONRenderer

from .problems import CONTENT_TYPE


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "mailing.api.auth.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": gettext("An API key from Organisation settings → API keys: `Authorization: Bearer pr_…`."),
        }


class BoundedDictSchema(OpenApiSerializerFieldExtension):
    """A request's bound on an object's keys (serializers.BoundedDictField)
    is the request's: an answer holds what is stored, which the bound
    never limited."""

    target_class = "mailing.api.serializers.BoundedDictField"

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        if direction == "request":
            schema["maxProperties"] = self.target.max_length
        return schema


def _problem_schema() -> dict:
    return {
        "type": "object",
        "description": gettext("An RFC 9457 problem: what was refused and why, in the request's language."),
        "properties": {
            "type": {"type": "string", "example": "urn:postroute:problem:validation"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "errors": {
                "type": "object",
                "description": gettext("For refused fields: each field's path (contacts.3.email) and its messages."),
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
            },
        },
        "required": ["type", "title", "status", "detail", "instance"],
    }


def document_problems(result: dict, generator, request, public) -> dict:
    """Every refusal is a problem document (README, "Errors"), whatever the
    operation; the schema said nothing of them, so a client generated from
    it could not read a 422's fields. Each operation now lists 4XX as one."""
    result.setdefault("components", {}).setdefault("schemas", {})["Problem"] = _problem_schema()
    refusal = {
        "description": gettext("Refused: a problem document (RFC 9457)."),
        "content": {CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"].setdefault("4XX", refusal)
    return result


class JsonRefusals:
    """A refusal (405, a ?format= the view has not: 404) in JSON, as every
    problem under /api/: the view's first renderer (the schema's YAML, the
    reference page's HTML) wrote it, under application/problem+json. And
    OPTIONS is 405, as on the API's views, not the view's docstring."""

    metadata_class = None

    def finalize_response(self, request, response, *args, **kwargs):
        if response.status_code >= 400:
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)


class DocsView(JsonRefusals, SpectacularSwaggerSplitView):
    pass


class SchemaView(JsonRefusals, SpectacularAPIView):
    """The schema of the one version there is (SPECTACULAR_SETTINGS'),
    whatever ?version= says: drf-spectacular put the parameter into the
    schema and, as given, into the answer's Content-Disposition header,
    where a line break was a 500 (Django refuses the header)."""

    def _get_version_parameter(self, request):
        return None
