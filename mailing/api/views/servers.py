"""The servers a tenant's mailings may use, as the dashboard sees them:
each window's limit, use and what is left, when a spent server resumes,
its health and state (mailing.dashboard.selectors)."""

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from ...dashboard import selectors as dashboard
from ...limits import NEVER
from ...views.dashboard import STATE_LABELS
from ..serializers import ServerSerializer
from .base import SERVERS_READ, ApiView


def _window(limit: int | None, used: int | None, left: int | None) -> dict:
    return {"limit": limit, "used": used, "left": left}


def server_data(row: dashboard.ServerRow) -> dict:
    server, usage = row.server, row.usage
    return ServerSerializer(
        {
            "id": server.public_id,
            "name": server.name,
            "platform": server.is_platform,
            "enabled": server.enabled,
            "health": server.health,
            "state": row.state.value,
            "state_label": str(STATE_LABELS[row.state]),
            "left": usage.left,
            "resume_at": usage.resume_at if usage.resume_at != NEVER else None,
            "minute": _window(usage.minute_limit, usage.minute_used, usage.minute_left),
            "hour": _window(usage.hour_limit, usage.hour_used, usage.hour_left),
            "day": _window(usage.day_limit, usage.day_used, usage.day_left),
            "quota": _window(usage.tenant_quota, usage.tenant_day_used, usage.tenant_day_left),
        }
    ).data


class ServerCollection(ApiView):
    scopes = {"GET": SERVERS_READ}

    @extend_schema(responses=ServerSerializer(many=True))
    def get(self, request):
        return Response([server_data(row) for row in dashboard.dashboard(self.tenant).servers])


class ServerItem(ApiView):
    scopes = {"GET": SERVERS_READ}

    @extend_schema(responses=ServerSerializer)
    def get(self, request, public_id):
        for row in dashboard.dashboard(self.tenant).servers:
            if row.server.public_id == public_id:
                return Response(server_data(row))
        raise Http404
