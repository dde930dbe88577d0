"""What users type into the platform's own letters: an organisation's name
and a person's name reach other people's inboxes from Postroute's address,
so they arrive short and with no link, no host name and no line break
(accounts.emails.neutralised); the invitation says who sent it and that
Postroute sent it for them."""

import re

import pytest
from django.core import mail

from accounts import emails
from accounts.models import Invitation, Tenant, User

pytestmark = pytest.mark.django_db
PHISH = "PayPal Security: verify your account at http://evil.example"
# What a mail client would make a link of: a scheme, or a dotted host name.
LINKABLE = re.compile(r"[a-z][a-z0-9+.-]*://|\bwww\.|[\w-]+[.\u3002\uff0e\uff61][a-z]{2,}", re.I)


def invite(tenant_name: str, inviter_name: str = "Alice") -> mail.EmailMessage:
    tenant = Tenant.objects.create(name=tenant_name, slug="t")
    inviter = User.objects.create_user("alice@acme.test", "x", full_name=inviter_name)
    invitation = Invitation.objects.create(tenant=tenant, email="new@x.test", invited_by=inviter)
    emails.invitation(invitation=invitation, base_url="https://postroute.test")
    return mail.outbox[-1]


def tenant_text(message: mail.EmailMessage) -> list[str]:
    """The subject and the bodies without what Postroute itself puts there
    (the link, the inviter's verified address)."""
    html = message.alternatives[0][0]
    parts = [message.subject, message.body, html]
    return [re.sub(r"https://postroute\.test\S*|alice@acme\.test", "", part) for part in parts]


def test_the_phishing_name_from_the_issue_arrives_without_its_link():
    message = invite(PHISH)
    assert message.subject == 'You\'re invited to join "PayPal Security: verify your account at…" on Postroute'
    for part in tenant_text(message):
        assert not LINKABLE.search(part), part
        assert "evil" not in part


@pytest.mark.parametrize(
    "name",
    [
        "Click https://evil.example/login now",
        "Support at www.evil.example",
        "HXXPS://EVIL.EXAMPLE",
        "evil.example",
        "secure-login.evil.co.uk",
        "evil\u3002example",  # ideographic full stop, a dot to IDNA
        "evil\uff0eexample",  # fullwidth full stop
        "evil\u200b.\u200bexample",  # zero-width spaces around the dot
        "javascript://evil.example",
        "ftp://10.0.0.1/x",
        "Mail us: x@evil.example",
    ],
)
def test_no_url_or_host_name_survives_in_the_invitation(name):
    for part in tenant_text(invite(name)):
        assert not LINKABLE.search(part), (name, part)


def test_the_name_is_cut_short_and_stays_on_one_line():
    message = invite("A" * 90 + "\r\nBcc: everyone@x.test", inviter_name="Bob\u202eevil\nX")
    assert message.subject == f'You\'re invited to join "{"A" * 39}…" on Postroute'
    assert "Bob evil X" not in message.body and "Bobevil X (alice@acme.test) invited you" in message.body
    assert "\u202e" not in message.body


def test_the_invitation_says_who_invited_and_that_postroute_sent_it():
    message = invite("Acme Corp", inviter_name="Alice Smith")
    assert 'invited to join "Acme Corp"' in message.subject
    assert "Alice Smith (alice@acme.test) invited you to join the organisation “Acme Corp”" in message.body
    assert "Postroute sent this email because a user of Postroute asked it to" in message.body
    html = message.alternatives[0][0]
    assert "Alice Smith (alice@acme.test)" in html and "Postroute sent this email" in html


def test_the_verification_letter_neutralises_the_name_the_sign_up_typed():
    user = User.objects.create_user("victim@x.test", "x", full_name="Visit www.evil.example/pay now")
    emails.verification(user=user, base_url="https://postroute.test")
    body = mail.outbox[-1].body
    assert "Hello Visit www evil example/pay now," in body and not LINKABLE.search(
        body.replace("https://postroute.test", "")
    )


def test_ordinary_names_are_left_alone():
    assert emails.neutralised("ООО «Ромашка»") == "ООО «Ромашка»"
    assert emails.neutralised("  Acme   & Sons  ") == "Acme & Sons"
    assert emails.neutralised("") == ""


@pytest.mark.parametrize(
    ("address", "on_the_wire"),
    [("ana@straße.de", "ana@xn--strae-oqa.de"), ("ivan@почта.рф", "ivan@xn--80a1acny.xn--p1ai")],
)
def test_a_letter_to_an_international_domain_goes_to_that_domain(address, on_the_wire):
    # Django's own encoding of the domain is IDNA 2003's, which sends
    # straße.de's letters to strasse.de, someone else's domain.
    user = User.objects.create_user(address, "x", full_name="Ana")
    emails.verification(user=user, base_url="https://postroute.test")
    message = mail.outbox[-1]
    assert message.recipients() == [on_the_wire]
    assert message.message()["To"] == on_the_wire
