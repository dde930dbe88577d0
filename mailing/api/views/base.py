"""The base of every API view: a key's authentication, its scopes, its
rate limit and JSON only; and the tenant the key acts for."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.translation import gettext as _
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from accounts.models import Tenant
from accounts.timezones import zone_of

from ..auth import ApiKeyAuthentication, HasScope, KeyRateThrottle
from ..parsers import BoundedJSONParser
from ..problems import from_service, invalid

READ = "read"
CONTACTS = "contacts"
MAILINGS = "mailings"
SERVERS_READ = "servers-read"


class JsonOnly(DefaultContentNegotiation):
    """JSON is the one form the API answers in, so Accept is not checked
    (RFC 9110 lets a server disregard it): a client that asked for
    application/problem+json alone, or sent a library's default such as
    text/plain, got 406 on every request, its refusals hidden behind it."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class ApiView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasScope]
    throttle_classes = [KeyRateThrottle]
    parser_classes = [BoundedJSONParser]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JsonOnly
    metadata_class = None  # OPTIONS: 405, not a description of the view
    scopes: dict[str, str] = {}
    # The query parameters its GET reads; any other, with any method, is
    # refused by name: DRF leaves them be, and a misspelt filter
    # (?list_id=) answered every row without a word.
    query: tuple[str, ...] = ()

    def initial(self, request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)  # the key, its scope and its rate first
        if not hasattr(self, request.method.lower()):
            return  # 405 follows
        allowed = self.query if request.method in ("GET", "HEAD") else ()
        if unknown := [name for name in request.query_params if name not in allowed]:
            if allowed:
                message = _("No such parameter. The parameters are: %(names)s.") % {"names": ", ".join(allowed)}
            else:
                message = _("This request takes no query parameters.")
            raise invalid({name[:100]: [message] for name in unknown[:20]})
        # One value each: the last was read and the others dropped.
        if twice := [name for name in request.query_params if len(request.query_params.getlist(name)) > 1]:
            raise invalid({name: [_("Give this parameter once.")] for name in twice})

    @property
    def tenant(self) -> Tenant:
        return self.request.auth.tenant

    def input(self, serializer_class, data=None) -> dict:
        """The request's body checked for shape; refused with 422. A time
        without an offset is read in the organisation's zone. A key that is
        none of the resource's fields is refused by name: DRF drops it, and
        a misspelt field ("server" for "servers") did something else than
        asked without a word. The fields the answers carry may come back."""
        context = {"zone": zone_of(self.tenant.time_zone)}
        serializer = serializer_class(data=self.request.data if data is None else data, context=context)
        if isinstance(serializer.initial_data, dict):
            known = serializer.fields.keys()
            if unknown := [key for key in serializer.initial_data if key not in known]:
                message = _("No such field. The fields are: %(fields)s.") % {
                    "fields": ", ".join(name for name, field in serializer.fields.items() if not field.read_only)
                }
                raise invalid({str(key)[:100]: [message] for key in unknown[:20]})
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


def service(call, **kwargs):
    """Call a service; its ValidationError becomes a problem (422 for a
    field, 409 for the state of things)."""
    try:
        return call(**kwargs)
    except DjangoValidationError as exc:
        raise from_service(exc) from exc
