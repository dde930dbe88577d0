"""Recovery codes are kept as keyed digests (accounts.recovery): what the
database holds, a dump of it, signs nobody in, and the codes shown once
still work once each."""

import importlib
import json

import pytest
from django.apps import apps
from django.test import Client, override_settings
from django.urls import reverse
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken

from accounts import recovery
from accounts.models import UserSession
from accounts.sessions import SessionStore
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

migration = importlib.import_module("accounts.migrations.0011_recovery_codes_hashed")


def new_codes(person) -> list[str]:
    person.client.post(reverse("accounts:recovery_codes_new"), {"password": PASSWORD})
    return person.client.get(reverse("accounts:recovery_codes")).context["codes"]


def code_step(email: str, code: str):
    client = Client()
    client.post(reverse("accounts:login"), {"email": email, "password": PASSWORD})
    return client.post(reverse("accounts:login_otp"), {"token": code})


def stored(person) -> list[str]:
    return list(StaticToken.objects.filter(device__user=person.user).values_list("token", flat=True))


def test_the_database_holds_no_code(alice):
    codes = new_codes(alice)
    rows = stored(alice)
    assert len(codes) == len(rows) == 10
    assert not [c for c in codes if any(c in row for row in rows)]


def test_a_stored_digest_typed_as_a_code_signs_nobody_in(alice):
    new_codes(alice)
    for row in stored(alice)[:3]:
        response = code_step(alice.user.email, row)
        assert response.status_code == 200 and b"That code is not valid" in response.content
    assert len(stored(alice)) == 10


def test_each_code_signs_in_once_however_it_is_typed(alice):
    codes = new_codes(alice)
    assert code_step(alice.user.email, f" {codes[0][:4].upper()} {codes[0][4:].upper()}")["Location"] == "/"
    assert code_step(alice.user.email, codes[1])["Location"] == "/"
    assert code_step(alice.user.email, codes[0]).status_code == 200
    assert len(stored(alice)) == 8


def test_codes_made_before_a_key_rotation_work_while_the_old_key_is_a_fallback(alice, settings):
    codes = new_codes(alice)
    with override_settings(SECRET_KEY="n" * 50, SECRET_KEY_FALLBACKS=[settings.SECRET_KEY]):
        device = StaticDevice.objects.get(user=alice.user)
        assert recovery.match(alice.user, codes[0]) == device
    with override_settings(SECRET_KEY="n" * 50, SECRET_KEY_FALLBACKS=[]):
        assert recovery.match(alice.user, codes[1]) is None


def test_the_migration_digests_plain_codes_once(alice):
    device = StaticDevice.objects.create(user=alice.user, name="Recovery codes")
    StaticToken.objects.create(device=device, token="abcd2345")  # django-otp's plain code
    migration.hash_plain_codes(apps, None)
    migration.hash_plain_codes(apps, None)  # again: digests stay
    assert stored(alice) == [recovery.digest(user_id=alice.user.pk, code="abcd2345")]
    assert code_step(alice.user.email, "abcd2345")["Location"] == "/"
    assert stored(alice) == []


def test_fresh_codes_wait_for_their_page_encrypted_in_the_session(alice):
    """Between the POST that makes them and the page that shows them, the
    codes wait in the session, a database row: a dump taken then, or of a
    session whose page was never opened, held them in clear."""
    alice.client.post(reverse("accounts:recovery_codes_new"), {"password": PASSWORD})
    row = UserSession.objects.get(session_key=alice.client.session.session_key)
    decoded = json.dumps(SessionStore().decode(row.session_data))
    codes = alice.client.get(reverse("accounts:recovery_codes")).context["codes"]
    assert len(codes) == 10 and not [c for c in codes if c in decoded or c in row.session_data]
