"""The exact message of a letter: the mailing's template snapshot rendered
with the letter's contact fields, From resolved for the sending server."""

from email.message import EmailMessage
from email.utils import formataddr, formatdate

from django.conf import settings

from servers.models import SmtpServer

from . import rendering
from .models import Letter, Mailing
from .sender import resolve_sender
from .unsubscribe import unsubscribe_url

LETTER_HEADER = "X-Postroute-Letter"


def letter_context(letter: Letter) -> dict[str, str]:
    url = unsubscribe_url(settings.SITE_URL, letter.tenant_id, letter.email)
    return {**letter.context, "unsubscribe_url": url}


def build_message(letter: Letter, server: SmtpServer, mailing: Mailing | None = None) -> EmailMessage:
    mailing = mailing or letter.mailing
    context = letter_context(letter)
    sender = resolve_sender(server, mailing)
    message = EmailMessage()
    message["From"] = formataddr((sender.name, sender.email))
    message["To"] = letter.email
    if sender.reply_to:
        message["Reply-To"] = sender.reply_to
    # Contact data must not break the header: CR/LF become spaces.
    message["Subject"] = " ".join(rendering.render(mailing.subject, context, html=False).splitlines())
    message["Date"] = formatdate(localtime=False)
    domain = sender.email.rpartition("@")[2] or "postroute.invalid"
    message["Message-ID"] = f"<{letter.public_id}@{domain}>"
    message[LETTER_HEADER] = str(letter.public_id)
    # RFC 8058 one-click unsubscribe: mailbox providers POST to the URL.
    message["List-Unsubscribe"] = f"<{context['unsubscribe_url']}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(rendering.render(mailing.text_body, context, html=False))
    if mailing.html_body:
        message.add_alternative(rendering.render(mailing.html_body, context, html=True), subtype="html")
    return message
