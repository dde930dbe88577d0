"""The platform's three letters (verification, invitation, password reset)
in Russian and Vietnamese: the subject, the text part and the HTML part,
with no English from the catalogue left in any of them."""

import re
from html import unescape

import pytest
from django.core import mail

from accounts import emails
from accounts.models import Invitation, User
from tests.i18n.english import english_left

pytestmark = pytest.mark.django_db
BASE_URL = "https://postroute.test"


def parts(message) -> dict[str, str]:
    html = next(body for body, kind in message.alternatives if kind == "text/html")
    # The HTML's visible text: no tags, no style sheet, no link targets.
    visible = unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<(style|head)\b.*?</\1>", " ", html, flags=re.S)))
    texts = {"subject": message.subject, "text": message.body, "html": visible}
    return {part: re.sub(r"https?://\S+", " ", text) for part, text in texts.items()}  # the links are no words


@pytest.mark.parametrize("language", ["ru", "vi"])
def test_every_platform_letter_is_wholly_in_the_recipients_language(tenant_a, alice, language):
    tenant_a.default_language = language
    tenant_a.save(update_fields=["default_language"])
    user = User.objects.create_user("v@x.test", "x", language=language)
    emails.verification(user=user, base_url=BASE_URL)
    emails.password_reset(user=user, base_url=BASE_URL)
    invitation = Invitation.objects.create(tenant=tenant_a, email="new@x.test", invited_by=alice.user)
    emails.invitation(invitation=invitation, base_url=BASE_URL)
    assert len(mail.outbox) == 3
    left = {
        f"{message.subject[:30]}: {part}": english_left(text)
        for message in mail.outbox
        for part, text in parts(message).items()
        if english_left(text)
    }
    assert left == {}


def test_an_invitation_to_someone_with_an_account_is_in_the_language_they_chose(tenant_a, alice, charlie):
    """Charlie chose Vietnamese; a Russian organisation's invitation came
    to him in Russian. Someone without an account still gets the inviting
    organisation's language."""
    tenant_a.default_language = "ru"
    tenant_a.save(update_fields=["default_language"])
    charlie.user.language = "vi"
    charlie.user.save(update_fields=["language"])
    for email in (charlie.user.email.upper(), "new@x.test"):
        invitation = Invitation.objects.create(tenant=tenant_a, email=email, invited_by=alice.user)
        emails.invitation(invitation=invitation, base_url=BASE_URL)
    to_charlie, to_new = mail.outbox
    assert not re.search("[А-Яа-я]", to_charlie.subject + to_charlie.body), to_charlie.subject
    assert english_left(to_charlie.subject) == [] and re.search("[ạ-ỹđ]", to_charlie.subject), to_charlie.subject
    assert re.search("[А-Яа-я]", to_new.subject), to_new.subject
