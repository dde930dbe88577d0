"""What servers tell an organisation's webhooks (accounts.webhooks): a
server's data in events, and `server.failing` when one of the tenant's own
servers starts failing (a connection test or the dispatcher found it so).
A platform server's failure is the platform staff's business: no event."""

from typing import Any

from accounts.webhooks import events as webhooks

from .models import SmtpServer


def server_data(server: SmtpServer) -> dict[str, Any]:
    data: dict[str, Any] = {"id": str(server.public_id), "name": server.name, "platform": server.is_platform}
    if not server.is_platform:
        data |= {"host": server.host, "port": server.port, "sender_email": server.sender_email}
    return data


def server_failing(server: SmtpServer, *, error: str, hint: str = "") -> None:
    data = {"server": server_data(server), "error": str(error), "hint": str(hint)}
    webhooks.emit(tenant_id=server.tenant_id, type=webhooks.SERVER_FAILING, data=data)
