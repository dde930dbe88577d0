"""Which language a page or a letter is in.

A page: the signed-in user's saved choice; else the language chosen in the
header before signing in (a cookie); else the browser's Accept-Language;
else the current organisation's default; else LANGUAGE_CODE.

A letter: its recipient's saved choice; else the default of the
organisation the letter is about (an invitation: the inviting
organisation's), else of the recipient's first organisation."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from django.conf import settings
from django.http import HttpRequest
from django.utils import translation
from django.utils.translation import get_supported_language_variant
from django.utils.translation.trans_real import parse_accept_lang_header

if TYPE_CHECKING:
    from .models import Tenant, User

CODES = frozenset(code for code, _ in settings.LANGUAGES)
# Languages we lack whose readers read one we have: Russian is an official
# language of Belarus, Kazakhstan and Kyrgyzstan, and browsers there often
# ask for the national language alone. Ukrainian is left out on purpose: a
# reader who asks for Ukrainian only gets English, unless they list Russian.
READ_ALSO = {"be": "ru", "kk": "ru", "ky": "ru"}


def supported(code: str | None) -> str | None:
    """`code` ("ru", "ru-RU", "vi-vn", "kk-KZ") as one of LANGUAGES, or None."""
    if not code:
        return None
    try:
        return get_supported_language_variant(code)
    except LookupError:
        return READ_ALSO.get(code.lower().split("-")[0])


def for_request(request: HttpRequest) -> str:
    user = getattr(request, "user", None)
    tenant = getattr(request, "tenant", None)
    saved = user.language if user is not None and user.is_authenticated else ""
    return of_request(request, saved=saved, tenant=tenant)


def of_request(request: HttpRequest, *, saved: str, tenant: "Tenant | None") -> str:
    """for_request's choice, given the signed-in user's saved language (the
    dashboard's poll knows it without loading the user)."""
    if saved in CODES:
        return saved
    chosen = supported(request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME))
    if chosen:
        return chosen
    for code, _quality in parse_accept_lang_header(request.headers.get("Accept-Language", "")):
        if code == "*":
            break
        if found := supported(code):
            return found
    if tenant is not None and tenant.default_language in CODES:
        return tenant.default_language
    return settings.LANGUAGE_CODE


def for_user(user: "User | None", tenant: "Tenant | None" = None) -> str:
    if user is not None and user.language in CODES:
        return user.language
    if tenant is None and user is not None:
        membership = user.memberships.select_related("tenant").order_by("created_at").first()
        tenant = membership.tenant if membership else None
    if tenant is not None and tenant.default_language in CODES:
        return tenant.default_language
    return settings.LANGUAGE_CODE


@contextmanager
def of_organisation(code: str | None) -> Iterator[None]:
    """Texts that background work stores for an organisation's members (a
    connection test's steps and diagnosis, a server's health, an import's
    errors, a bounce mailbox's state) in the organisation's language: they
    are read later by everyone in it. `code`: the tenant's default_language."""
    with translation.override(code if code in CODES else settings.LANGUAGE_CODE):
        yield
