"""Templates, to read: a mailing is created from one."""

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from ...access import get_template
from ...models import MailTemplate
from .. import pagination
from ..serializers import TemplateSerializer, paged
from .base import READ, ApiView
from .contacts import CURSOR


class TemplateCollection(ApiView):
    scopes = {"GET": READ}
    query = ("cursor", "limit")

    @extend_schema(
        parameters=CURSOR, responses=paged(TemplateSerializer, "TemplatePage"), operation_id="templates_list"
    )
    def get(self, request):
        rows, cursor = pagination.page(request, MailTemplate.objects.filter(tenant=self.tenant))
        return Response({"results": TemplateSerializer(rows, many=True).data, "next_cursor": cursor})


class TemplateItem(ApiView):
    scopes = {"GET": READ}

    @extend_schema(responses=TemplateSerializer)
    def get(self, request, public_id):
        return Response(TemplateSerializer(get_template(self.tenant, public_id)).data)
