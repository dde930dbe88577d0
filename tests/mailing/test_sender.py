"""Sender resolution (DOMAIN.md §3): every combination of the server's
substitution flag, the template's fixed address and name, and the server's
display name, each with the From it must produce."""

import pytest

from mailing.models import MailTemplate
from mailing.sender import resolve_sender
from servers.models import SmtpServer

SERVER = "robot@mail.example"
SERVER_NAME = "Mail robot"
FIXED = "news@acme.example"
FIXED_NAME = "Acme News"

# substitution allowed, template address, template name, server name
#   -> From address, display name, substituted
ROWS = [
    (True, FIXED, FIXED_NAME, SERVER_NAME, FIXED, FIXED_NAME, True),
    (True, FIXED, FIXED_NAME, "", FIXED, FIXED_NAME, True),
    (True, FIXED, "", SERVER_NAME, FIXED, "", True),  # the template's address and (empty) name, as a pair
    (True, FIXED, "", "", FIXED, "", True),
    (True, "", FIXED_NAME, SERVER_NAME, SERVER, FIXED_NAME, False),
    (True, "", FIXED_NAME, "", SERVER, FIXED_NAME, False),
    (True, "", "", SERVER_NAME, SERVER, SERVER_NAME, False),
    (True, "", "", "", SERVER, "", False),
    (False, FIXED, FIXED_NAME, SERVER_NAME, SERVER, FIXED_NAME, False),
    (False, FIXED, FIXED_NAME, "", SERVER, FIXED_NAME, False),
    (False, FIXED, "", SERVER_NAME, SERVER, SERVER_NAME, False),
    (False, FIXED, "", "", SERVER, "", False),
    (False, "", FIXED_NAME, SERVER_NAME, SERVER, FIXED_NAME, False),
    (False, "", FIXED_NAME, "", SERVER, FIXED_NAME, False),
    (False, "", "", SERVER_NAME, SERVER, SERVER_NAME, False),
    (False, "", "", "", SERVER, "", False),
]


def server(*, allow: bool, name: str) -> SmtpServer:
    return SmtpServer(name="S", sender_email=SERVER, sender_name=name, allow_sender_substitution=allow)


def template(*, email: str, name: str, reply_to: str = "") -> MailTemplate:
    return MailTemplate(name="T", subject="s", text_body="t", sender_email=email, sender_name=name, reply_to=reply_to)


def test_the_table_covers_every_combination():
    combinations = {(allow, bool(email), bool(name), bool(srv)) for allow, email, name, srv, *_ in ROWS}
    assert len(ROWS) == len(combinations) == 16


@pytest.mark.parametrize(("allow", "tpl_email", "tpl_name", "srv_name", "from_email", "from_name", "substituted"), ROWS)
def test_it_resolves_the_sender(allow, tpl_email, tpl_name, srv_name, from_email, from_name, substituted):
    resolved = resolve_sender(server(allow=allow, name=srv_name), template(email=tpl_email, name=tpl_name))
    assert (resolved.email, resolved.name, resolved.substituted) == (from_email, from_name, substituted)


@pytest.mark.parametrize("allow", [True, False])
@pytest.mark.parametrize("tpl_email", [FIXED, ""])
def test_it_carries_the_templates_reply_to_whoever_sends(allow, tpl_email):
    srv = server(allow=allow, name=SERVER_NAME)
    assert resolve_sender(srv, template(email=tpl_email, name="", reply_to="replies@acme.example")).reply_to == (
        "replies@acme.example"
    )
    assert resolve_sender(srv, template(email=tpl_email, name="")).reply_to == ""
