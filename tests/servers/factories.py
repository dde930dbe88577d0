from accounts.models import Tenant
from servers.models import Security, SmtpServer
from tests.smtp_servers import LOGIN, PASSWORD


def make_server(tenant: Tenant | None, **fields: object) -> SmtpServer:
    password = fields.pop("password", PASSWORD)
    values = {
        "name": "Test server",
        "sender_email": LOGIN,
        "host": "127.0.0.1",
        "port": 2525,
        "security": Security.NONE,
        "login": LOGIN,
        **fields,
    }
    server = SmtpServer(tenant=tenant, **values)
    server.set_password(password)
    server.save()
    return server
