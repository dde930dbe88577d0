"""Shared fixtures. The named roles follow healthchecks' alice/bob/charlie:
alice owns tenant A, bob is a plain member of A, carol is an admin of A, and
charlie is an outsider who owns tenant B."""

import time
from dataclasses import dataclass

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone, translation
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import Membership, Role, Tenant, User
from tests.accounts.webhook_helpers import committed, receiver  # noqa: F401 - fixtures for every test
from tests.dovecot import dovecot, dovecot_mailbox  # noqa: F401 - fixtures for every test
from tests.servers.dns_server import dns_checks, dns_server  # noqa: F401 - fixtures for every test
from tests.services import REQUIRED

PASSWORD = "correct horse battery staple 42"


@pytest.fixture(autouse=True, scope="session")
def _database_is_the_required_one(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        vendor = connection.vendor
    if REQUIRED and vendor != "postgresql":
        pytest.fail("REQUIRE_SERVICES=1 needs DATABASE_URL to point at PostgreSQL", pytrace=False)
    yield
    if vendor == "postgresql":
        # Threads of live-server and concurrency tests may leave sessions
        # open; they would keep the test database from being dropped.
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


@pytest.fixture(autouse=True)
def _the_product_app_stays_current():
    """A test's own Celery client (a producer for a real worker) must not
    become the current app: `.delay()` of every later test would go to
    its broker instead of running eagerly (set_as_current=False)."""
    yield
    from celery import current_app

    from config.celery import app

    if current_app._get_current_object() is not app:
        app.set_current()
        pytest.fail("this test left another Celery app current: create it with set_as_current=False")


@pytest.fixture(autouse=True)
def _no_language_left_active():
    """A request through LocaleMiddleware leaves its language active in the
    test's thread (Django deactivates nothing after a response, and in
    production each request activates its own): a test that expects English
    after one that asked for Vietnamese failed by order alone."""
    yield
    translation.deactivate()


def totp_code(device: TOTPDevice, *, offset: int = 0) -> str:
    """The code the user's phone shows `offset` seconds from now."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + offset
    return f"{totp.token():0{device.digits}d}"


def next_code(device: TOTPDevice) -> str:
    """The code the user's phone shows in the time step after the one the
    server last accepted: the next login's code. Computed from the window the
    server recorded, not from the clock: a code accepted one step late moves
    the device's drift, and "now + 30 s" may then fall past the tolerance."""
    device.refresh_from_db()
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, 0)
    totp.time = device.t0 + (device.last_t + 1) * device.step
    return f"{totp.token():0{device.digits}d}"


@dataclass
class Person:
    user: User
    device: TOTPDevice
    client: Client


def make_person(email: str, tenant: Tenant | None, role: str = Role.OWNER) -> Person:
    user = User.objects.create_user(email, PASSWORD, email_verified_at=timezone.now())
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    if tenant is not None:
        Membership.objects.create(user=user, tenant=tenant, role=role)
    client = Client()
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return Person(user, device, client)


@pytest.fixture
def tenant_a(db) -> Tenant:
    return Tenant.objects.create(name="Acme", slug="acme")


@pytest.fixture
def tenant_b(db) -> Tenant:
    return Tenant.objects.create(name="Globex", slug="globex")


@pytest.fixture
def alice(tenant_a) -> Person:
    return make_person("alice@acme.test", tenant_a, Role.OWNER)


@pytest.fixture
def carol(tenant_a) -> Person:
    return make_person("carol@acme.test", tenant_a, Role.ADMIN)


@pytest.fixture
def bob(tenant_a) -> Person:
    return make_person("bob@acme.test", tenant_a, Role.MEMBER)


@pytest.fixture
def charlie(tenant_b) -> Person:
    return make_person("charlie@globex.test", tenant_b, Role.OWNER)


@pytest.fixture
def staff_client(db) -> Client:
    """A superuser signed in with a verified OTP device, as the admin wants."""
    person = make_person("ops@postroute.test", None)
    person.user.is_staff = person.user.is_superuser = True
    person.user.save(update_fields=["is_staff", "is_superuser"])
    return person.client
