import re

from django.core import mail

LINK = re.compile(r"https?://testserver(/\S+)")


def last_link(to: str) -> str:
    """The path of the link in the newest email sent to `to`."""
    message = next(m for m in reversed(mail.outbox) if to in m.to)
    return LINK.search(message.body).group(1)
