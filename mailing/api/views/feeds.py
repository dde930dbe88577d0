"""What a CRM learns back: bounces and unsubscribes since a cursor. Poll
with the next_cursor of the last answer; with none, from the beginning.

Bounces are the delivery reports tied to a letter by what Postroute put on
it (a header, the Message-ID, the envelope token): a report matched only
by recipient and time, or not at all, is shown to the tenant but never
acted on, and not sent here either. Complaints (a feedback loop's report
that the recipient marked the letter as spam) come here too, with their
kind: the address is suppressed for them as for a hard bounce, and a CRM
must learn it as it learns a bounce."""

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from ...models import BounceReport, Suppression
from .. import pagination
from ..serializers import BounceSerializer, UnsubscribeSerializer, paged
from .base import READ, ApiView
from .contacts import CURSOR

BOUNCES = (BounceReport.Kind.HARD, BounceReport.Kind.SOFT, BounceReport.Kind.REFUSED, BounceReport.Kind.COMPLAINT)


class BounceFeed(ApiView):
    scopes = {"GET": READ}
    query = ("cursor", "limit")

    @extend_schema(parameters=CURSOR, responses=paged(BounceSerializer, "BouncePage"), operation_id="bounces_list")
    def get(self, request):
        reports = BounceReport.objects.filter(
            tenant=self.tenant, kind__in=BOUNCES, letter__isnull=False, matched_by__in=BounceReport.CONFIRMING
        ).select_related("letter__mailing")
        rows, cursor = pagination.page(request, reports, feed=True)
        return Response({"results": BounceSerializer(rows, many=True).data, "next_cursor": cursor})


class UnsubscribeFeed(ApiView):
    scopes = {"GET": READ}
    query = ("cursor", "limit")

    @extend_schema(
        parameters=CURSOR, responses=paged(UnsubscribeSerializer, "UnsubscribePage"), operation_id="unsubscribes_list"
    )
    def get(self, request):
        unsubscribed = Suppression.objects.filter(tenant=self.tenant, reason=Suppression.Reason.UNSUBSCRIBED)
        rows, cursor = pagination.page(request, unsubscribed, feed=True)
        return Response({"results": UnsubscribeSerializer(rows, many=True).data, "next_cursor": cursor})
