"""Several tenants per user, switching, suspension, and the staff admin."""

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import services
from accounts.models import Membership, Role, Tenant, User
from tests.conftest import PASSWORD, totp_code

pytestmark = pytest.mark.django_db


def test_a_user_switches_between_tenants(alice, tenant_b):
    Membership.objects.create(user=alice.user, tenant=tenant_b, role=Role.MEMBER)
    assert alice.client.get(reverse("home")).context["current_tenant"].slug == "acme"
    alice.client.post(reverse("accounts:tenant_switch"), {"tenant": str(tenant_b.public_id)})
    home = alice.client.get(reverse("home"))
    assert home.context["current_tenant"].slug == "globex"
    assert [m.tenant.slug for m in home.context["other_memberships"]] == ["acme"]


def test_a_user_creates_another_organisation(alice):
    alice.client.post(reverse("accounts:tenant_new"), {"name": "Acme Labs"})
    assert Membership.objects.get(user=alice.user, tenant__name="Acme Labs").role == Role.OWNER
    assert alice.client.get(reverse("home")).context["current_tenant"].name == "Acme Labs"
    alice.client.post(reverse("accounts:tenant_new"), {"name": "Ромашка"})
    assert Tenant.objects.get(name="Ромашка").slug == "romashka"  # transliterated, not team-xxxxxx


def test_a_suspended_tenants_users_are_told_and_can_do_nothing(alice, bob, tenant_a):
    services.tenant_suspend(tenant=tenant_a, reason="unpaid")
    for url in (reverse("home"), reverse("accounts:team")):
        response = alice.client.get(url)
        assert response.status_code == 403 and b"suspended" in response.content
    response = alice.client.post(reverse("accounts:team"), {"email": "n@example.test", "role": "member"})
    assert response.status_code == 403
    services.tenant_reactivate(tenant=tenant_a)
    assert alice.client.get(reverse("home")).status_code == 200


@pytest.fixture
def staff(db) -> User:
    return User.objects.create_superuser("ops@postroute.test", PASSWORD)


def admin_url(name: str = "index") -> str:
    return reverse(f"admin:{name}")


def test_the_admin_is_not_at_slash_admin():
    assert admin_url() == "/" + settings.ADMIN_URL
    assert Client().get("/admin/").status_code == 404


def test_the_admin_refuses_staff_without_a_verified_otp_device(staff):
    client = Client()
    client.force_login(staff)  # password only
    response = client.get(admin_url())
    assert response.status_code == 302 and "login" in response["Location"]
    # The admin's own login form insists on a code as well.
    response = client.post(admin_url("login"), {"email": staff.email, "password": PASSWORD, "code": ""})
    assert response.status_code == 200 and client.get(admin_url()).status_code == 302


def test_staff_with_otp_run_tenants_from_the_admin(staff, alice, bob, carol, tenant_a):
    device = TOTPDevice.objects.create(user=staff, name="staff", confirmed=True)
    client = Client()
    response = client.post(
        admin_url("login"),
        {"email": staff.email, "password": PASSWORD, "code": totp_code(device)},
    )
    assert response.status_code == 302, response.content
    assert DEVICE_ID_SESSION_KEY in client.session
    listing = client.get(reverse("admin:accounts_tenant_changelist") + "?q=alice@acme")
    assert listing.status_code == 200 and b"Acme" in listing.content
    # A search through the members' emails joins them again: still 3 members, not 9.
    listing = client.get(reverse("admin:accounts_tenant_changelist") + "?q=acme.test")
    assert [(t.name, t.member_total) for t in listing.context["cl"].result_list] == [(tenant_a.name, 3)]
    client.post(
        reverse("admin:accounts_tenant_changelist"),
        {"action": "suspend", "_selected_action": [tenant_a.pk]},
    )
    assert Tenant.objects.get(pk=tenant_a.pk).status == Tenant.Status.SUSPENDED
    assert alice.client.get(reverse("home")).status_code == 403
