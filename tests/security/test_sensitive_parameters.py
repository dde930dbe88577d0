"""No password reaches an error report. Every page of the URL walk (as the
owner and as a visitor), the pages behind signed links (an invitation, a
password reset), the staff login and every add form of the staff admin are
read; each form there with a password field is posted, with a marker in
every password field, and Django's error reporter (the filter that writes
the POST data of a failing request into a 500 mail or log) must show
stars, never the marker. A new view with a password field that forgets
sensitive_post_parameters fails here."""

import re
from collections import Counter
from collections.abc import Iterator

import pytest
from django.contrib import admin
from django.contrib.auth.tokens import default_token_generator
from django.test import Client
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.views.debug import SafeExceptionReporterFilter
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import Invitation, User
from accounts.tokens import make_invitation_token
from tests.conftest import PASSWORD

from .walk import OneKind, concrete_urls, tenant_a_objects, walk

pytestmark = pytest.mark.django_db

MARKER = "pw-marker-7f3a9c"
FORM = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.S)
INPUT = re.compile(r"<input\b[^>]*>")
STATS: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    yield
    print(
        f"\nsensitive parameters: {STATS['forms']} forms with a password on {STATS['pages']} pages posted, "
        f"{STATS['shown']} passwords shown to the error reporter"
    )


def _attr(tag: str, name: str) -> str | None:
    found = re.search(rf'\b{name}="([^"]*)"', tag)
    return found.group(1) if found else None


def password_forms(url: str, html: str) -> list[tuple[str, list[str]]]:
    """(where it posts, its password fields) for each form of the page that has one."""
    forms = []
    for attrs, body in FORM.findall(html):
        names = [_attr(t, "name") for t in INPUT.findall(body) if _attr(t, "type") == "password"]
        if names := [n for n in names if n]:
            forms.append((_attr(attrs, "action") or url, names))
    return forms


def post_and_report(client: Client, page: str, leaks: list[str], kinds: OneKind | None = None, route: str = "") -> int:
    """Posts each password form of the page, noting in `leaks` each field
    the error reporter shows; returns how many forms."""
    response = client.get(page)
    if kinds is not None:
        kinds.answered(route, page, response.status_code)
    if response.status_code != 200 or "html" not in response.get("Content-Type", ""):
        return 0
    forms = password_forms(page, response.content.decode())
    for action, names in forms:
        posted = client.post(action, dict.fromkeys(names, MARKER))
        shown = SafeExceptionReporterFilter().get_post_parameters(posted.wsgi_request)
        leaked = [n for n in names if shown.get(n) == MARKER]
        STATS.update(forms=1, shown=len(leaked))
        leaks += [f"POST {action} (form of {page}): {name}" for name in leaked]
    STATS.update(pages=bool(forms))
    return len(forms)


def staff_client() -> Client:
    staff = User.objects.create_superuser("ops@postroute.test", PASSWORD)
    device = TOTPDevice.objects.create(user=staff, name="staff", confirmed=True)
    client = Client()
    client.force_login(staff)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def test_no_form_with_a_password_shows_it_to_the_error_reporter(alice, tenant_a, tmp_path):
    ids = tenant_a_objects(tenant_a, alice, tmp_path)
    pages = [(route, url) for route, _ in walk() if not route.startswith("staff/") for url in concrete_urls(route, ids)]
    found: Counter = Counter()
    leaks: list[str] = []
    kinds = OneKind(ids)  # another model's object: a 404 to the owner, the login page to a visitor
    for route, page in pages:
        if kinds.skip(route, page):
            continue
        found["tenant"] += post_and_report(alice.client, page, leaks, kinds, route)
        found["public"] += post_and_report(Client(), page, leaks)
    invitation = Invitation.objects.create(tenant=tenant_a, email="new@example.test", invited_by=alice.user)
    found["public"] += post_and_report(
        Client(), reverse("accounts:invitation", args=[make_invitation_token(invitation)]), leaks
    )
    reset = Client()
    uid, token = urlsafe_base64_encode(force_bytes(alice.user.pk)), default_token_generator.make_token(alice.user)
    form_page = reset.get(reverse("accounts:password_reset_confirm", args=[uid, token]))["Location"]
    found["public"] += post_and_report(reset, form_page, leaks)
    found["staff"] += post_and_report(Client(), reverse("admin:login"), leaks)
    staff = staff_client()
    for model in admin.site._registry:
        meta = model._meta
        found["staff"] += post_and_report(staff, reverse(f"admin:{meta.app_label}_{meta.model_name}_add"), leaks)
    found["staff"] += post_and_report(staff, reverse("admin:password_change"), leaks)
    assert leaks == []
    # The walk must have found the forms it is about, or it proves nothing.
    assert found["tenant"] >= 4  # a server (add, edit), the bounce mailbox, the Security page's two
    assert found["public"] >= 4  # sign-up, login, invitation, new password
    assert found["staff"] >= 3  # staff login, the servers' and the mailbox's admin forms
