"""The suppression list: addresses that never get a letter."""

from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response

from ... import contacts as services
from ...models import Suppression
from .. import pagination
from ..idempotency import idempotent
from ..problems import Problem, invalid
from ..serializers import SuppressionSerializer, paged
from .base import CONTACTS, READ, ApiView, service
from .contacts import CURSOR


class SuppressionCollection(ApiView):
    scopes = {"GET": READ, "POST": CONTACTS}
    query = ("cursor", "limit", "reason")

    @extend_schema(
        parameters=[*CURSOR, OpenApiParameter("reason", str, enum=Suppression.Reason.values)],
        responses=paged(SuppressionSerializer, "SuppressionPage"),
        operation_id="suppressions_list",
    )
    def get(self, request):
        queryset = Suppression.objects.filter(tenant=self.tenant)
        if reason := request.query_params.get("reason"):
            if reason not in Suppression.Reason.values:
                raise invalid({"reason": [_("One of: %(values)s.") % {"values": ", ".join(Suppression.Reason.values)}]})
            queryset = queryset.filter(reason=reason)
        rows, cursor = pagination.page(request, queryset)
        return Response({"results": SuppressionSerializer(rows, many=True).data, "next_cursor": cursor})

    @extend_schema(request=SuppressionSerializer, responses={201: SuppressionSerializer, 200: SuppressionSerializer})
    @idempotent
    def post(self, request):
        """Suppress an address (by hand). One already suppressed keeps its
        first reason: 200 instead of 201."""
        data = self.input(SuppressionSerializer)
        existed = services.is_suppressed(self.tenant, data["email"])
        suppression = service(
            services.suppression_add,
            tenant=self.tenant,
            email=data["email"],
            reason=Suppression.Reason.MANUAL,
            note=data.get("note", ""),
        )
        code = status.HTTP_200_OK if existed else status.HTTP_201_CREATED
        return Response(SuppressionSerializer(suppression).data, status=code)


class SuppressionItem(ApiView):
    scopes = {"DELETE": CONTACTS}

    @extend_schema(responses={204: None})
    def delete(self, request, email):
        if "\x00" in email or not services.suppression_remove(tenant=self.tenant, email=email):
            raise Problem(404, "not-found", _("Not found"), _("This address is not suppressed."))
        return Response(status=status.HTTP_204_NO_CONTENT)
