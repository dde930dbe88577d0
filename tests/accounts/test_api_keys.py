"""The API keys page: owners and admins create a key (its secret shown
once, on that answer only) and revoke it; members see the list but every
write is 403; an outsider cannot revoke another organisation's key."""

import pytest

from accounts.models import ApiKey

pytestmark = pytest.mark.django_db
URL = "/accounts/organisation/api-keys/"


def test_an_owner_creates_a_key_shown_once(alice, tenant_a):
    response = alice.client.post(URL, {"name": "CRM", "scopes": ["read", "contacts"]})
    assert response.status_code == 200
    key = ApiKey.objects.get(tenant=tenant_a)
    secret = response.context["secret"]
    assert secret.startswith(key.prefix) and secret.encode() in response.content
    assert key.scopes == ["read", "contacts"] and key.created_by == alice.user
    page = alice.client.get(URL)
    assert secret.encode() not in page.content and key.prefix.encode() in page.content
    assert b"Never" in page.content  # not used yet
    # The key works at once.
    api = alice.client.get("/api/v1/contacts/", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert api.status_code == 200


def test_a_key_needs_a_name_and_a_scope(carol, tenant_a):
    response = carol.client.post(URL, {"name": "", "scopes": []})
    assert response.status_code == 400 and response.context["form"].errors.keys() == {"name", "scopes"}
    response = carol.client.post(URL, {"name": "x", "scopes": ["everything"]})
    assert response.status_code == 400
    assert not ApiKey.objects.exists()


def test_revoking_stops_the_key(alice, tenant_a):
    alice.client.post(URL, {"name": "CRM", "scopes": ["read"]})
    key = ApiKey.objects.get()
    secret = alice.client.post(URL, {"name": "Other", "scopes": ["read"]}).context["secret"]
    response = alice.client.post(f"{URL}{key.public_id}/revoke/")
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert b"revoked" in alice.client.get(URL).content
    other = ApiKey.objects.get(name="Other")
    assert other.revoked_at is None
    assert alice.client.get("/api/v1/lists/", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200


def test_a_member_sees_the_keys_but_cannot_create_or_revoke(alice, bob, tenant_a):
    alice.client.post(URL, {"name": "CRM", "scopes": ["read"]})
    key = ApiKey.objects.get()
    page = bob.client.get(URL)
    assert page.status_code == 200 and b"CRM" in page.content and b"Create key" not in page.content
    assert bob.client.post(URL, {"name": "Mine", "scopes": ["read"]}).status_code == 403
    assert bob.client.post(f"{URL}{key.public_id}/revoke/").status_code == 403
    assert ApiKey.objects.get().revoked_at is None and ApiKey.objects.count() == 1


def test_an_outsider_cannot_revoke_another_organisations_key(alice, charlie, tenant_a):
    alice.client.post(URL, {"name": "Acme-sales-key", "scopes": ["read"]})
    key = ApiKey.objects.get()
    assert charlie.client.post(f"{URL}{key.public_id}/revoke/").status_code == 404
    assert b"Acme-sales-key" not in charlie.client.get(URL).content
    assert ApiKey.objects.get().revoked_at is None
