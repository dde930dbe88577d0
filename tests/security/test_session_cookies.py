"""A session cookie is the visitor's to write: whatever it holds, a page
answers as for no session (the login page), never with a server error."""

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from accounts.sessions import SessionStore, well_formed

pytestmark = pytest.mark.django_db

COOKIES = ["a\x00b" * 12, "\x00", "é" * 32, "x" * 5000, "a b c d e f g h", "ab'; DROP TABLE x; --", "%00" * 11]


NAMES = ["NUL inside", "NUL", "not ASCII", "5,000 characters", "spaces", "SQL", "%00"]


@pytest.mark.parametrize("value", COOKIES, ids=NAMES)
@pytest.mark.parametrize("url", ["/", "/dashboard/data.json", "/servers/"])
def test_a_session_cookie_that_is_no_key_is_no_session(value, url):
    client = Client(raise_request_exception=False)
    client.cookies[settings.SESSION_COOKIE_NAME] = value
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))


def test_a_key_as_django_makes_them_is_well_formed():
    store = SessionStore()
    store.create()
    assert well_formed(store.session_key)
    assert SessionStore(store.session_key).session_key == store.session_key
    assert SessionStore("a\x00" * 8).session_key is None
