"""Contacts: create one, upsert many by address (the CSV import's path),
list with a cursor, read and delete one."""

from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Prefetch
from django.http import Http404
from django.utils.text import format_lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response

from ... import contacts as services
from ...access import get_contact, get_contact_list
from ...imports import runner as import_runner
from ...models import Contact, ContactList, CustomField
from .. import pagination
from ..idempotency import idempotent
from ..problems import Problem, invalid
from ..serializers import BulkResultSerializer, BulkUpsertSerializer, ContactSerializer, paged
from .base import CONTACTS, READ, ApiView, service

BULK_LOCK = 0x1D1  # advisory lock namespace: one bulk upsert at a time per organisation
BULK_RETRY_SECONDS = 5
LISTS = Prefetch("lists", queryset=ContactList.objects.only("pk", "public_id"))
CURSOR = [
    OpenApiParameter("cursor", str, description=gettext_lazy("The next_cursor of the previous page.")),
    OpenApiParameter(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": pagination.MAX_LIMIT},
        description=format_lazy(
            gettext_lazy("Rows a page: 1 to {max}, {default} if left out."),
            max=pagination.MAX_LIMIT,
            default=pagination.DEFAULT_LIMIT,
        ),
    ),
]


def own_lists(tenant, ids: list, field: str = "lists") -> list[ContactList]:
    """The tenant's lists by public id; another tenant's id is not found."""
    found = list(ContactList.objects.filter(tenant=tenant, public_id__in=ids))
    if len(found) != len(set(ids)):
        raise invalid({field: [_("No such list.")]})
    return found


@contextmanager
def one_at_a_time(tenant_id: int) -> Iterator[None]:
    """An organisation's bulk upserts one at a time. Each runs in the web
    process that took it, for seconds, and counts as one request: sent in
    parallel, one organisation's took every web worker there is, and
    everyone's pages and API waited. The next is 429 (Retry-After: a bulk
    takes seconds) while one runs; the lock (PostgreSQL's, per session)
    goes with the connection if the process dies."""
    if connection.vendor != "postgresql":
        yield
        return
    key = [BULK_LOCK, tenant_id % 2**31]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", key)
        if not cursor.fetchone()[0]:
            raise Problem(
                429,
                "rate-limited",
                _("Too many requests"),
                _("Another bulk upsert of this organisation is running. Send this one when it has finished."),
                retry_after=BULK_RETRY_SECONDS,
            )
        try:
            yield
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", key)


class ContactCollection(ApiView):
    scopes = {"GET": READ, "POST": CONTACTS}
    query = ("cursor", "limit", "list")

    @extend_schema(
        parameters=[
            *CURSOR,
            OpenApiParameter("list", UUID, description=gettext_lazy("Only the contacts of this list (its id).")),
        ],
        responses=paged(ContactSerializer, "ContactPage"),
        operation_id="contacts_list",
    )
    def get(self, request):
        queryset = Contact.objects.filter(tenant=self.tenant).prefetch_related(LISTS)
        if (list_id := request.query_params.get("list")) is not None:
            queryset = queryset.filter(lists=self._list(list_id))
        rows, cursor = pagination.page(request, queryset)
        return Response({"results": ContactSerializer(rows, many=True).data, "next_cursor": cursor})

    def _list(self, public_id: str) -> ContactList:
        try:
            return get_contact_list(self.tenant, public_id)
        except (Http404, ValidationError):  # a malformed id or another tenant's: the same answer
            raise invalid({"list": [_("No such list.")]}) from None

    @extend_schema(request=ContactSerializer, responses={201: ContactSerializer})
    @idempotent
    def post(self, request):
        data = self.input(ContactSerializer)
        self._check_fields(data.get("fields", {}))
        contact = service(
            services.contact_create,
            tenant=self.tenant,
            email=data["email"],
            first_name=data.get("first_name", ""),
            last_name=data.get("last_name", ""),
            fields=data.get("fields", {}),
            lists=own_lists(self.tenant, data.get("lists", [])),
        )
        return Response(ContactSerializer(contact).data, status=status.HTTP_201_CREATED)

    def _check_fields(self, fields: dict) -> None:
        """A value for a field the organisation has not defined would be
        dropped by the service (the page shows defined fields only): here it
        is refused by name instead of answering 201 without it."""
        defined = set(CustomField.objects.filter(tenant=self.tenant).values_list("key", flat=True))
        if unknown := [key for key in fields if key not in defined]:
            message = _(
                "No such field: add it on the Contacts page first, or send the contact "
                "through contacts/bulk/, which adds new fields."
            )
            raise invalid({f"fields.{key[:100]}": [message] for key in unknown[:20]})  # as ApiView.input names keys


class ContactBulk(ApiView):
    scopes = {"POST": CONTACTS}

    @extend_schema(request=BulkUpsertSerializer, responses=BulkResultSerializer)
    @idempotent
    def post(self, request):
        """Create or update up to 10,000 contacts by address, as a CSV
        import would: same checks, same merging, each bad row reported."""
        data = self.input(BulkUpsertSerializer)
        contact_list = own_lists(self.tenant, [data["list"]], field="list")[0]
        source = f"API: {request.auth.name}"  # a label, like a file name: not translated
        with one_at_a_time(self.tenant.pk):
            imp, rejections = import_runner.import_rows(
                contact_list=contact_list, by=None, rows=data["contacts"], source=source
            )
        result = {
            "import_id": imp.public_id,
            "rows": imp.rows_seen,
            "created": imp.created,
            "updated": imp.updated,
            "rejected": imp.rejected,
            "rejections": [{"index": r.line - 1, "reason": r.reason} for r in rejections],
        }
        return Response(BulkResultSerializer(result).data)


class ContactItem(ApiView):
    scopes = {"GET": READ, "DELETE": CONTACTS}

    @extend_schema(responses=ContactSerializer)
    def get(self, request, public_id):
        return Response(ContactSerializer(get_contact(self.tenant, public_id)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, public_id):
        services.contact_delete(contact=get_contact(self.tenant, public_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
