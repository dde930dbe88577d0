"""Contact lists: list, create, read, delete (the contacts stay)."""

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from ... import contacts as services
from ...access import get_contact_list
from .. import pagination
from ..idempotency import idempotent
from ..serializers import ContactListSerializer, paged
from .base import CONTACTS, READ, ApiView, service
from .contacts import CURSOR


class ListCollection(ApiView):
    scopes = {"GET": READ, "POST": CONTACTS}
    query = ("cursor", "limit")

    @extend_schema(
        parameters=CURSOR, responses=paged(ContactListSerializer, "ContactListPage"), operation_id="lists_list"
    )
    def get(self, request):
        rows, cursor = pagination.page(request, services.lists_with_counts(self.tenant))
        return Response({"results": ContactListSerializer(rows, many=True).data, "next_cursor": cursor})

    @extend_schema(request=ContactListSerializer, responses={201: ContactListSerializer})
    @idempotent
    def post(self, request):
        data = self.input(ContactListSerializer)
        contact_list = service(services.list_create, tenant=self.tenant, name=data["name"])
        contact_list.contact_count = 0
        return Response(ContactListSerializer(contact_list).data, status=status.HTTP_201_CREATED)


class ListItem(ApiView):
    scopes = {"GET": READ, "DELETE": CONTACTS}

    @extend_schema(responses=ContactListSerializer)
    def get(self, request, public_id):
        get_contact_list(self.tenant, public_id)  # 404 first, as everywhere
        contact_list = services.lists_with_counts(self.tenant).get(public_id=public_id)
        return Response(ContactListSerializer(contact_list).data)

    @extend_schema(responses={204: None})
    def delete(self, request, public_id):
        service(services.list_delete, contact_list=get_contact_list(self.tenant, public_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
