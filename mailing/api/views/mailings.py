"""Mailings: create one from a template and lists, start, pause, resume,
cancel, and follow its progress, through the services the pages use."""

from datetime import datetime

from django.http import Http404
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response

from servers.models import SmtpServer

from ... import mailings as services
from ... import selectors
from ...access import get_mailing, get_template
from ...models import Letter, Mailing
from ...views.mailings import rejected, sender_preview
from .. import pagination
from ..idempotency import idempotent
from ..problems import conflict, invalid
from ..serializers import MailingActionSerializer, MailingSerializer, paged
from .base import MAILINGS, READ, ApiView, service
from .contacts import CURSOR, own_lists

ACTIONS = ("start", "schedule", "unschedule", "pause", "resume", "cancel")


def mailing_data(mailing: Mailing, progress: selectors.Progress | None = None) -> dict:
    progress = progress or selectors.progress_for([mailing])[mailing.pk]
    counts = {status: progress.count(status) for status in Letter.Status.values}
    links = list(mailing.server_links.all())
    return MailingSerializer(
        {
            "public_id": mailing.public_id,
            "name": mailing.name,
            "template": mailing.template.public_id,
            "lists": [lst.public_id for lst in mailing.lists.all()],
            "servers": [link.server.public_id for link in links],
            "passed_over": [
                {"server": link.server.public_id, "reason": link.passed_over_note} for link in links if link.passed_over
            ],
            "status": mailing.status,
            "preparing": mailing.preparing_since is not None,
            "start_error": mailing.start_error,
            "letter_count": mailing.letter_count,
            "created_at": mailing.created_at,
            "started_at": mailing.started_at,
            "finished_at": mailing.finished_at,
            "resume_at": mailing.resume_at,
            "wait_reason": mailing.wait_reason if mailing.status == Mailing.Status.WAITING else None,
            "scheduled_at": mailing.scheduled_at,
            "progress": {"total": progress.total, **counts},
        }
    ).data


def _servers(tenant, ids: list | None) -> list[SmtpServer]:
    available = services.available_servers(tenant)
    if ids is None:
        return available
    by_id = {s.public_id: s for s in available}
    if any(i not in by_id for i in ids):
        raise invalid({"servers": [_("No such server, or it is turned off.")]})
    # Each once: mailing_save links each server given, and a second link
    # of one server broke its constraint (a 500).
    return [by_id[i] for i in dict.fromkeys(ids)]


def _mailings(tenant):
    related = ("template", "lists", "server_links__server")
    return Mailing.objects.filter(tenant=tenant).select_related("template").prefetch_related(*related[1:])


class MailingCollection(ApiView):
    scopes = {"GET": READ, "POST": MAILINGS}
    query = ("cursor", "limit", "status")

    @extend_schema(
        parameters=[*CURSOR, OpenApiParameter("status", str, enum=Mailing.Status.values)],
        responses=paged(MailingSerializer, "MailingPage"),
        operation_id="mailings_list",
    )
    def get(self, request):
        queryset = _mailings(self.tenant)
        if wanted := request.query_params.get("status"):
            if wanted not in Mailing.Status.values:
                raise invalid({"status": [_("One of: %(values)s.") % {"values": ", ".join(Mailing.Status.values)}]})
            queryset = queryset.filter(status=wanted)
        rows, cursor = pagination.page(request, queryset)
        progress = selectors.progress_for(rows)
        return Response({"results": [mailing_data(m, progress[m.pk]) for m in rows], "next_cursor": cursor})

    @extend_schema(request=MailingSerializer, responses={201: MailingSerializer})
    @idempotent
    def post(self, request):
        """A draft mailing; start it with POST …/start/."""
        data = self.input(MailingSerializer)
        try:
            template = get_template(self.tenant, data["template"])
        except Http404:
            raise invalid({"template": [_("No such template.")]}) from None
        mailing = Mailing(
            tenant=self.tenant, name=data["name"], template=template, scheduled_at=data.get("scheduled_at")
        )
        service(
            services.mailing_save,
            mailing=mailing,
            lists=own_lists(self.tenant, data["lists"]),
            servers=_servers(self.tenant, data.get("servers")),
        )
        return Response(mailing_data(_mailings(self.tenant).get(pk=mailing.pk)), status=status.HTTP_201_CREATED)


class MailingItem(ApiView):
    scopes = {"GET": READ}

    @extend_schema(responses=MailingSerializer)
    def get(self, request, public_id):
        mailing = get_mailing(self.tenant, public_id)
        return Response(mailing_data(_mailings(self.tenant).get(pk=mailing.pk)))


class MailingAction(ApiView):
    scopes = {"POST": MAILINGS}

    @extend_schema(
        operation_id="mailing_action",
        parameters=[OpenApiParameter("action", str, OpenApiParameter.PATH, enum=ACTIONS)],
        request=MailingActionSerializer,
        responses={202: MailingSerializer, 200: MailingSerializer},
    )
    @idempotent
    def post(self, request, public_id, action):
        """start (202: its letters are being prepared; follow `preparing`
        and `progress`), schedule (at `scheduled_at`: the body's, else the
        mailing's), unschedule (back to a draft), pause, resume or cancel."""
        mailing = get_mailing(self.tenant, public_id)
        if action not in ACTIONS:
            raise Http404
        # No body (or null) asks nothing more; any other body that is no
        # object is refused, as every other POST refuses it.
        data = self.input(MailingActionSerializer, {} if request.data is None else request.data)
        if mailing.preparing_since is not None:
            raise conflict(str(services.PREPARING))
        if action in ("start", "schedule") and not data["confirm_rejected"]:
            _refuse_rejected(mailing)
        if action == "start":
            service(services.mailing_start_async, mailing=mailing)
            code = status.HTTP_202_ACCEPTED
        elif action == "schedule":
            service(services.mailing_schedule, mailing=mailing, at=_start_time(mailing, data.get("scheduled_at")))
            code = status.HTTP_200_OK
        else:
            service(services.transition, mailing=mailing, action=action)
            code = status.HTTP_200_OK
        return Response(mailing_data(_mailings(self.tenant).get(pk=mailing.pk)), status=code)


def _start_time(mailing: Mailing, given: datetime | None) -> datetime:
    if given is None and mailing.scheduled_at is None:
        raise invalid({"scheduled_at": [_("Say when it starts: an ISO 8601 time.")]})
    return given or mailing.scheduled_at


def _refuse_rejected(mailing: Mailing) -> None:
    """As the page: a start whose letters receivers will refuse (DMARC
    p=reject) must say it knows."""
    refused = rejected(sender_preview(mailing)[0])
    if refused:
        names = ", ".join(f"«{row['server'].name}»" for row in refused)
        raise conflict(
            _(
                "Receivers will reject the letters sent through %(servers)s: their From domain publishes DMARC "
                'p=reject and does not authorise the server. Send {"confirm_rejected": true} to start all the same.'
            )
            % {"servers": names}
        )
