"""An authenticated SMTP connection to a tenant's server, opened the one
way every sender uses: the rules again, the SSRF check, the pinned address,
TLS verified against the host name, then AUTH."""

import smtplib

from django.conf import settings

from . import netguard, rules
from .models import Security, SmtpServer
from .probes import tls_context


def open_smtp(server: SmtpServer, *, timeout: float) -> smtplib.SMTP:
    rules.assert_connectable(server)
    host, port = server.connect_host_port()
    host = netguard.normalize_host(host)
    addresses = netguard.resolve_checked(host, port)
    context = tls_context(server.verify_tls)
    external = server.kind == SmtpServer.Kind.EXTERNAL
    cls = netguard.PinnedSMTP_SSL if external and server.security == Security.SSL else netguard.PinnedSMTP
    client = cls(
        host, port, addresses=addresses, timeout=timeout, context=context, local_hostname=settings.SMTP_HELO_NAME
    )
    try:
        client.open()
        client.ehlo()
        if external and server.security == Security.STARTTLS:
            client.starttls(context=context)
            client.ehlo()
        if server.login:
            client.login(server.login, server.get_password())
    except BaseException:
        client.close()
        raise
    return client
