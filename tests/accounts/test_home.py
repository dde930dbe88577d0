"""The tenant's home: the getting-started checklist ticks itself as data
appears; staff get their first OTP device from a command."""

import io

import pytest
import segno
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import User
from mailing import mailings
from mailing.models import Mailing
from tests.mailing.builders import make_list, make_template
from tests.servers.factories import make_server

pytestmark = pytest.mark.django_db


def done(person) -> dict[str, bool]:
    return {item.key: item.done for item in person.client.get(reverse("home")).context["checklist"]}


def test_the_checklist_ticks_itself_as_the_data_appears(alice, charlie, tenant_a):
    assert done(alice) == {"server": False, "template": False, "contacts": False, "mailing": False}
    server = make_server(tenant_a)
    template = make_template(tenant_a)
    contact_list = make_list(tenant_a, "L", ["a@x.test"])
    assert done(alice) == {"server": True, "template": True, "contacts": True, "mailing": False}
    mailing = Mailing(tenant=tenant_a, name="m", template=template)
    mailings.mailing_save(mailing=mailing, lists=[contact_list], servers=[server])
    mailings.mailing_start(mailing=mailing)
    assert all(done(alice).values())
    assert not any(done(charlie).values())  # another tenant's data ticks nothing


def test_a_staff_user_gets_a_first_otp_device(tmp_path):
    User.objects.create_superuser("ops@postroute.test", "pw")
    out = io.StringIO()
    call_command("add_staff_otp", "ops@postroute.test", png=str(tmp_path / "otp.png"), stdout=out)
    # Compact: two rows of modules per line, and no blank line between them.
    rows = out.getvalue().split("\nThe same QR code")[0].splitlines()
    url = TOTPDevice.objects.get(user__email="ops@postroute.test").config_url
    height = segno.make(url, error="m").symbol_size()[1]
    assert len(rows) == (height + 1) // 2 and all(row.strip() for row in rows)
    assert (tmp_path / "otp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "otp.png").stat().st_mode & 0o077 == 0
    assert TOTPDevice.objects.filter(user__email="ops@postroute.test", confirmed=True).count() == 1
    with pytest.raises(CommandError, match="already has a device"):
        call_command("add_staff_otp", "ops@postroute.test")
    User.objects.create_user("tenant@acme.test", "pw")
    with pytest.raises(CommandError, match="not staff"):
        call_command("add_staff_otp", "tenant@acme.test")
