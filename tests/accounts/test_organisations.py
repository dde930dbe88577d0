"""Creating organisations: a cap per account, no way round a suspension,
and the staff admin showing which organisations one person runs."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from accounts import services
from accounts.models import Membership, Role, Tenant
from tests.conftest import make_person

pytestmark = pytest.mark.django_db
NEW = reverse("accounts:tenant_new")


def create(person, name: str):
    return person.client.post(NEW, {"name": name})


def test_an_account_creates_at_most_max_organisations_per_user(alice, tenant_a, settings):
    settings.MAX_ORGANISATIONS_PER_USER = 3
    Tenant.objects.filter(pk=tenant_a.pk).update(created_by=alice.user)
    responses = [create(alice, f"Side {i}") for i in range(4)]
    assert [r.status_code for r in responses] == [302, 302, 403, 403]
    assert Tenant.objects.filter(created_by=alice.user).count() == 3
    assert "the most an account may" in responses[-1].content.decode()
    # The page says so before anyone types a name.
    page = alice.client.get(NEW)
    assert "the most an account may" in page.content.decode() and b'name="name"' not in page.content


def test_leaving_or_handing_over_an_organisation_does_not_free_a_place(alice, bob, settings):
    settings.MAX_ORGANISATIONS_PER_USER = 1
    assert create(alice, "Mine").status_code == 302
    mine = Tenant.objects.get(name="Mine")
    Membership.objects.create(user=bob.user, tenant=mine, role=Role.OWNER)
    Membership.objects.filter(user=alice.user, tenant=mine).delete()
    assert create(alice, "Another").status_code == 403


def test_staff_are_exempt_and_staff_may_raise_one_users_cap(alice, settings):
    settings.MAX_ORGANISATIONS_PER_USER = 0
    assert create(alice, "Refused").status_code == 403
    alice.user.max_organisations = 2
    alice.user.save(update_fields=["max_organisations"])
    assert [create(alice, n).status_code for n in ("One", "Two", "Three")] == [302, 302, 403]
    staff = make_person("staff@postroute.test", None)
    staff.user.is_staff = True
    staff.user.save(update_fields=["is_staff"])
    for name in ("S1", "S2", "S3"):
        services.tenant_create(name=name, owner=staff.user)
    assert Tenant.objects.filter(created_by=staff.user).count() == 3


@pytest.mark.parametrize("role, refused", [(Role.OWNER, True), (Role.ADMIN, True), (Role.MEMBER, False)])
def test_who_runs_a_suspended_organisation_cannot_create_another(tenant_a, role, refused):
    person = make_person(f"{role}@acme.test", tenant_a, role)
    services.tenant_suspend(tenant=tenant_a, reason="phishing")
    response = create(person, "Fresh start")
    assert response.status_code == (403 if refused else 302)
    assert Tenant.objects.filter(name="Fresh start").exists() is not refused
    if refused:
        assert "is suspended" in response.content.decode()
        with pytest.raises(ValidationError, match="suspended"):
            services.tenant_create(name="Through the service", owner=person.user)


def test_the_creator_who_left_a_suspended_organisation_is_still_stopped(alice, bob, tenant_a):
    Tenant.objects.filter(pk=tenant_a.pk).update(created_by=alice.user)
    Membership.objects.filter(user=bob.user).update(role=Role.OWNER)
    Membership.objects.filter(user=alice.user).delete()
    services.tenant_suspend(tenant=tenant_a)
    other = make_person("alice2@acme.test", None)
    Tenant.objects.filter(pk=tenant_a.pk).update(created_by=other.user)
    assert create(other, "Escape").status_code == 403


def test_staff_lift_the_suspension_block_for_one_user(alice, tenant_a):
    services.tenant_suspend(tenant=tenant_a)
    assert create(alice, "Blocked").status_code == 403
    alice.user.suspension_block_lifted = True
    alice.user.save(update_fields=["suspension_block_lifted"])
    assert create(alice, "Allowed").status_code == 302


def test_a_signup_creates_the_first_organisation_as_its_creator(client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("accounts:signup"),
            {"email": "dana@initech.test", "organisation": "Initech", "password": "correct horse battery staple 42"},
        )
    tenant = Tenant.objects.get(name="Initech")
    assert tenant.created_by.email == "dana@initech.test"


# The staff admin


@pytest.fixture
def staff(db):
    person = make_person("root@postroute.test", None)
    person.user.is_staff = person.user.is_superuser = True
    person.user.save(update_fields=["is_staff", "is_superuser"])
    return person


def test_the_tenant_admin_shows_owners_creators_and_who_shares(staff, alice, charlie, tenant_a, tenant_b, settings):
    settings.MAX_ORGANISATIONS_PER_USER = 5
    Tenant.objects.filter(pk=tenant_a.pk).update(created_by=alice.user)
    side = services.tenant_create(name="Acme Side", owner=alice.user)
    Tenant.objects.filter(pk=tenant_b.pk).update(created_by=charlie.user)
    url = reverse("admin:accounts_tenant_changelist")

    page = staff.client.get(url).content.decode()
    assert "alice@acme.test · <a" in page and "2 organisations</a>" in page

    shared = staff.client.get(url + "?shared=yes").context["cl"].result_list
    assert {t.name for t in shared} == {"Acme", "Acme Side"}
    alone = staff.client.get(url + "?shared=no").context["cl"].result_list
    assert {t.name for t in alone} == {"Globex"}
    group = staff.client.get(url + f"?created_by__id__exact={alice.user.pk}").context["cl"].result_list
    assert {t.name for t in group} == {"Acme", "Acme Side"}

    # An owner in common is shown too, whoever created them.
    Membership.objects.create(user=charlie.user, tenant=side, role=Role.OWNER)
    shared = staff.client.get(url + "?shared=yes").context["cl"].result_list
    assert {t.name for t in shared} == {"Acme", "Acme Side", "Globex"}
