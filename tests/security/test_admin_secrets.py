"""The staff admin shows no secret a user or a tenant keeps: not the key of
an authenticator app (its QR code neither), not a recovery code, not a
stored SMTP, IMAP or webhook secret, not an API key. Whoever reads those
signs in as the user (the key and the codes are the second factor) or
sends as the tenant; staff who must help a user reset the two-factor login
(the users' action), they never need to read it. Every registered model's
list and change page is read, and the device pages django-otp adds."""

import base64

import pytest
from django.conf import settings
from django.contrib import admin
from django.urls import NoReverseMatch, reverse

from accounts import api_keys, services
from accounts.models import WebhookEndpoint
from servers.models import BounceMailbox
from tests.servers.factories import make_server

pytestmark = pytest.mark.django_db


@pytest.fixture
def secrets_of_alice(alice, tenant_a) -> list[str]:
    key = alice.device.key
    codes = services.recovery_codes_create(user=alice.user)
    server = make_server(tenant_a, name="A-server")
    server.set_password("smtp-Secret-4711")
    server.save()
    mailbox = BounceMailbox(tenant=tenant_a, host="8.8.8.8", login="b@acme.test")
    mailbox.set_password("imap-Secret-4712")
    mailbox.save()
    endpoint = WebhookEndpoint(tenant=tenant_a, url="https://hooks.acme.example/in", events=["letter.bounced"])
    endpoint.set_secret("whsec_Secret-4713")
    endpoint.save()
    _key, api_secret = api_keys.api_key_create(tenant=tenant_a, by=alice.user, name="k", scopes=["read"])
    b32 = base64.b32encode(bytes.fromhex(key)).decode()
    return [key, key.upper(), b32, b32.rstrip("="), *codes, "smtp-Secret-4711", "imap-Secret-4712",
            "whsec_Secret-4713", api_secret]  # fmt: skip


def admin_pages() -> list[str]:
    """The list and the change page of every object of every registered model."""
    urls = []
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        urls.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        for pk in model_admin.get_queryset(None).values_list("pk", flat=True)[:20]:
            try:
                urls.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[pk]))
            except NoReverseMatch:
                continue
    return urls


def device_pages(alice) -> list[str]:
    """The pages django-otp's own admin adds for a device, by path: they
    must not answer whether or not the admin registers the device models."""
    totp, static = f"/{settings.ADMIN_URL}otp_totp/totpdevice/", f"/{settings.ADMIN_URL}otp_static/staticdevice/"
    device = alice.device.pk
    recovery = alice.user.staticdevice_set.get().pk
    return [
        totp,
        f"{totp}{device}/change/",
        f"{totp}{device}/config/",
        f"{totp}{device}/qrcode/",
        f"{totp}add/",
        static,
        f"{static}{recovery}/change/",
        f"{static}add/",
    ]


def test_no_admin_page_shows_a_secret(staff_client, alice, secrets_of_alice):
    shown = {}
    for url in admin_pages() + device_pages(alice):
        response = staff_client.get(url)
        assert response.status_code in (200, 404), url
        page = response.content.decode(errors="replace")
        if found := [s for s in secrets_of_alice if s in page]:
            shown[url] = found
    assert shown == {}


def test_staff_cannot_plant_a_known_key_or_recovery_code(staff_client, alice):
    totp = f"/{settings.ADMIN_URL}otp_totp/totpdevice/add/"
    static = f"/{settings.ADMIN_URL}otp_static/staticdevice/add/"
    planted = {"user": alice.user.pk, "name": "planted", "confirmed": "on", "key": "00" * 20, "step": 30, "t0": 0,
               "digits": 6, "tolerance": 1, "drift": 0, "throttling_failure_count": 0}  # fmt: skip
    assert staff_client.post(totp, planted).status_code == 404
    codes = {"user": alice.user.pk, "name": "planted", "confirmed": "on", "token_set-TOTAL_FORMS": 1,
             "token_set-INITIAL_FORMS": 0, "token_set-0-token": "planted1"}  # fmt: skip
    assert staff_client.post(static, codes).status_code == 404
    assert list(alice.user.totpdevice_set.values_list("name", flat=True)) == ["phone"]
    assert not alice.user.staticdevice_set.exists()
