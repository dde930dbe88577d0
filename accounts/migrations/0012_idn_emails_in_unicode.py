"""Addresses whose domain was stored in its ASCII spelling (ana@xn--bcher-kva.de)
take the Unicode one (ana@bücher.de), as accounts.models.normalize_email_address
now keeps them: logging in with either spelling finds the account. The
normalisation is frozen here as a migration is.

An account whose Unicode spelling another account already has is left as it
is (two accounts of one mailbox, made before this: staff merge them); it
still logs in with the spelling it has. Nothing to undo: the Unicode
spelling is what the previous release also accepts."""

import contextlib
import unicodedata

import idna
from django.db import migrations


def unicode_domain(email: str) -> str:
    local, at, domain = email.strip().lower().rpartition("@")
    if not at:
        return domain
    labels = []
    for label in unicodedata.normalize("NFC", domain).split("."):
        if label.startswith("xn--"):
            with contextlib.suppress(UnicodeError):  # no valid A-label: as typed
                label = idna.decode(label)
        labels.append(label)
    return f"{local}@{'.'.join(labels)}"


def idn_emails_in_unicode(apps, schema_editor) -> None:
    User = apps.get_model("accounts", "User")
    Invitation = apps.get_model("accounts", "Invitation")
    for user in User.objects.filter(email__icontains="xn--").iterator():
        email = unicode_domain(user.email)
        if email != user.email and not User.objects.filter(email__iexact=email).exists():
            User.objects.filter(pk=user.pk).update(email=email)
    for invitation in Invitation.objects.filter(email__icontains="xn--").iterator():
        email = unicode_domain(invitation.email)
        if email != invitation.email:
            Invitation.objects.filter(pk=invitation.pk).update(email=email)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0011_recovery_codes_hashed")]

    operations = [migrations.RunPython(idn_emails_in_unicode, migrations.RunPython.noop)]
