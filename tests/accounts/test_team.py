"""Team management: roles, the last owner, read-only members, outsiders."""

import pytest
from django.urls import reverse

from accounts.models import Invitation, Membership, Role

pytestmark = pytest.mark.django_db


def membership(person) -> Membership:
    return Membership.objects.get(user=person.user)


def test_the_owner_changes_a_role(alice, bob):
    url = reverse("accounts:member_role", args=[membership(bob).public_id])
    assert alice.client.post(url, {"role": Role.ADMIN}).status_code == 302
    assert membership(bob).role == Role.ADMIN


def test_the_last_owner_cannot_leave_nor_be_demoted(alice, bob):
    response = alice.client.post(reverse("accounts:team_leave"), follow=True)
    assert b"last owner cannot leave" in response.content
    alice.client.post(reverse("accounts:member_role", args=[membership(alice).public_id]), {"role": Role.MEMBER})
    assert membership(alice).role == Role.OWNER
    # With a second owner, the first may go.
    alice.client.post(reverse("accounts:member_role", args=[membership(bob).public_id]), {"role": Role.OWNER})
    alice.client.post(reverse("accounts:team_leave"))
    assert not Membership.objects.filter(user=alice.user).exists()


def test_an_admin_cannot_touch_owners(alice, carol):
    url = reverse("accounts:member_role", args=[membership(alice).public_id])
    assert carol.client.post(url, {"role": Role.MEMBER}).status_code == 403
    assert carol.client.post(reverse("accounts:member_remove", args=[membership(alice).public_id])).status_code == 403
    assert membership(alice).role == Role.OWNER


def test_a_member_reads_the_team_but_gets_403_on_every_write(alice, bob):
    page = bob.client.get(reverse("accounts:team"))
    assert page.status_code == 200 and alice.user.email.encode() in page.content
    writes = [
        (reverse("accounts:team"), {"email": "x@example.test", "role": Role.MEMBER}),
        (reverse("accounts:member_role", args=[membership(alice).public_id]), {"role": Role.MEMBER}),
        (reverse("accounts:member_remove", args=[membership(alice).public_id]), {}),
    ]
    for url, data in writes:
        assert bob.client.post(url, data).status_code == 403, url
    assert not Invitation.objects.exists()
    # Leaving is the member's own business.
    assert bob.client.post(reverse("accounts:team_leave")).status_code == 302
    assert not Membership.objects.filter(user=bob.user).exists()


def test_an_outsider_gets_404_on_every_object_of_another_tenant(alice, bob, charlie):
    invitation = Invitation.objects.create(tenant=membership(alice).tenant, email="z@example.test")
    urls = [
        reverse("accounts:member_role", args=[membership(bob).public_id]),
        reverse("accounts:member_remove", args=[membership(bob).public_id]),
        reverse("accounts:invitation_revoke", args=[invitation.public_id]),
    ]
    for url in urls:
        assert charlie.client.post(url, {"role": Role.OWNER}).status_code == 404, url
    assert membership(bob).role == Role.MEMBER
    invitation.refresh_from_db()
    assert invitation.revoked_at is None
    page = charlie.client.get(reverse("accounts:team")).content
    assert b"alice@acme.test" not in page and b"charlie@globex.test" in page


def test_an_outsider_cannot_switch_into_another_tenant(alice, charlie):
    tenant = membership(alice).tenant
    response = charlie.client.post(reverse("accounts:tenant_switch"), {"tenant": str(tenant.public_id)})
    assert response.status_code == 404
    assert charlie.client.get(reverse("home")).context["current_tenant"].slug == "globex"


def test_anonymous_visitors_are_sent_to_login(alice, bob):
    from django.test import Client

    client = Client()
    for url in (reverse("home"), reverse("accounts:team"), reverse("accounts:security")):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:login"))
    url = reverse("accounts:member_remove", args=[membership(bob).public_id])
    assert client.post(url).status_code == 302
    assert Membership.objects.filter(user=bob.user).exists()
