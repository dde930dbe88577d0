"""A server's health is stored as words (servers.words) and worded when it
is read, in the reader's language: a platform server is read by tenants of
every language, and a tenant's members need not share one."""

import re

import pytest
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext

from mailing import mailings as services
from mailing.bounces import readers
from mailing.models import Mailing
from servers import presets
from servers.deadlines import DeadlineExceeded
from servers.errors import diagnose
from servers.models import BounceMailbox, Health
from servers.probes import ProbeResult
from servers.services import record_health
from servers.words import Seconds, Words
from tests.mailing.builders import make_list, make_template, run_until_settled
from tests.servers.factories import make_server
from tests.smtp_servers import smtp_server

pytestmark = pytest.mark.django_db

REFUSED = {
    "ru": "Сервер отклонил логин или пароль (535",
    "vi": "Máy chủ từ chối tên đăng nhập hoặc mật khẩu (535",
    "en": "The server refused the login or password (535",
}


def start_mailing(tenant, servers) -> Mailing:
    mailing = Mailing(tenant=tenant, name="m", template=make_template(tenant))
    services.mailing_save(mailing=mailing, lists=[make_list(tenant, "L", ["r@x.test"])], servers=servers)
    services.mailing_start(mailing=mailing)
    return mailing


def speak(person, language: str) -> None:
    person.user.language = language
    person.user.save(update_fields=["language"])


def test_a_platform_servers_failure_reads_in_each_readers_language(tenant_a, alice, bob, settings):
    """The platform speaks English: a Russian and a Vietnamese reader of a
    mailing sent through its failing server read why in English."""
    settings.DEPLOYMENT_MODE = "saas"
    tenant_a.default_language = "ru"
    tenant_a.save(update_fields=["default_language"])
    with smtp_server() as (controller, _):
        platform = make_server(None, name="Platform", port=controller.port, password="wrong")
        mailing = start_mailing(tenant_a, [platform])
        with translation.override("en"):
            run_until_settled(mailing, timezone.now())
    platform.refresh_from_db()
    assert platform.health == Health.FAILING and platform.health_error.startswith(REFUSED["en"])
    page = reverse("mailings:detail", args=[mailing.public_id])
    for person, language in ((alice, "ru"), (bob, "vi")):
        speak(person, language)
        text = person.client.get(page).content.decode()
        assert REFUSED[language] in text, language
        (server,) = person.client.get(reverse("dashboard:data")).json()["servers"]
        assert REFUSED[language] in server["notice"], language  # the live dashboard's
        with translation.override(language):
            assert str(presets.GENERIC_AUTH_HINT) in text, language


def test_a_row_written_before_words_were_kept_shows_its_stored_text(tenant_a):
    server = make_server(tenant_a, health=Health.FAILING, health_error="Старый текст", health_hint="Совет")
    with translation.override("vi"):
        assert (server.health_message, server.health_fix) == ("Старый текст", "Совет")
    server.health_words = {"message": {"id": "%(nope)s refused", "p": {"other": 1}}, "hint": "junk"}
    with translation.override("vi"):
        assert (server.health_message, server.health_fix) == ("%(nope)s refused", "Совет")


def test_words_keep_nested_words_durations_and_the_servers_text_through_json():
    with translation.override("ru"):
        diagnosis = diagnose(TimeoutError(), host="smtp.example.com", port=465, timeout=1.5)
        assert "1,5 секунды" in diagnosis.message
    stored = diagnosis.words_json()
    words = Words.from_json(stored["message"])
    assert words is not None and words.params["within"] == Seconds(1.5)
    with translation.override("vi"):
        assert "smtp.example.com:465" in str(words) and "1,5 giây" in str(words)
    reply = Words.from_json(Words("The server refused: %(reply)s.", {"reply": "554 a\x00b"}).to_json())
    assert str(reply) == "The server refused: 554 a\ufffdb."


@pytest.mark.parametrize(("heard", "said"), [(2, "2"), (1023, "1\xa0023"), (12345, "12\xa0345")])
def test_a_dribbling_servers_byte_count_reads_right_in_russian(heard, said):
    """ "(2 байт)", "(1023 байт)": Russian says 2 байта, and groups 1 023."""
    exc = DeadlineExceeded("reply", budget=30, heard=heard)
    with translation.override("ru"):
        text = diagnose(exc, host="smtp.example.com", port=465, timeout=30).message
    assert f"(получено байт: {said})" in text, text


def test_a_shared_windows_count_is_no_adjective_after_a_number_in_russian():
    """ "1 ваших" is no Russian: the count comes after its word."""
    with translation.override("ru"):
        assert gettext("%(count)s yours") % {"count": 1} == "ваших: 1"


def test_a_bounce_mailboxs_failure_reads_in_the_readers_language(tenant_a, alice, bob):
    """The reader's failure line repeated the stored text: a Vietnamese
    member of a Russian organisation read it in Russian under the
    Vietnamese health box."""
    tenant_a.default_language = "ru"
    tenant_a.save(update_fields=["default_language"])
    mailbox = BounceMailbox.objects.create(tenant=tenant_a, host="imap.example.com", port=993, login="b@acme.test")
    with translation.override("ru"):
        readers._failed(mailbox, ConnectionRefusedError())
    mailbox.refresh_from_db()
    assert re.search("[А-Яа-я]", mailbox.last_error), mailbox.last_error  # the organisation's language
    speak(bob, "vi")
    page = bob.client.get(reverse("servers:list")).content.decode()
    with translation.override("vi"):
        said = gettext("Nothing accepts connections on %(where)s.") % {"where": "imap.example.com:993"}
    assert page.count(said) == 2 and mailbox.last_error not in page


def test_staff_read_why_a_platform_server_fails_in_their_language(staff_client, settings):
    settings.DEPLOYMENT_MODE = "saas"
    platform = make_server(None, name="Platform")
    with translation.override("en"):
        diagnosis = diagnose(ConnectionRefusedError(), host="smtp.platform.test", port=587)
    record_health(record=platform, result=ProbeResult(diagnosis=diagnosis))
    url = reverse("admin:servers_smtpserver_change", args=[platform.pk])
    page = staff_client.get(url, HTTP_ACCEPT_LANGUAGE="vi").content.decode()
    with translation.override("vi"):
        said = gettext("Nothing accepts connections on %(where)s.") % {"where": "smtp.platform.test:587"}
    assert said in page and diagnosis.message not in page
