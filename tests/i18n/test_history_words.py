"""A mailing's history is stored as words (servers.words) and worded when it
is read, in the reader's language: background work writes it in the
organisation's language, and its members need not share that one."""

import html
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone, translation

from mailing import mailings as services
from mailing.models import Mailing, MailingEvent
from tests.api.conftest import make_api
from tests.mailing.builders import make_template, run_until_settled, servers_in_order
from tests.mailing.test_dispatch_real_world import start

pytestmark = pytest.mark.django_db
EMAILS = ["ann@x.test", "bob@x.test"]
PAUSED = {
    "ru": "Приостановлена: ни один сервер этой рассылки не может её отправить.",
    "vi": "Đã tạm dừng: không máy chủ nào của chiến dịch này có thể gửi nó.",
    "en": "Paused: no server of this mailing can carry it.",
}
REPLY_TO_NEEDS = {  # why the server %s is passed over
    "ru": "Адрес для ответов (Reply-To) этой рассылки josé@acme.test не в ASCII до @ и требует SMTPUTF8, "
    "которого нет у сервера %s.",
    "vi": "Địa chỉ trả lời (Reply-To) josé@acme.test của chiến dịch này không phải ASCII trước @ và cần SMTPUTF8, "
    "mà máy chủ %s không hỗ trợ.",
    "en": "josé@acme.test, this mailing's Reply-To address, is not ASCII before the @ and needs SMTPUTF8, "
    "which the server %s lacks.",
}
GOES_ON = {  # the page's "Passed over" and the API's reason
    "ru": "Продолжает без сервера One:",
    "vi": "Tiếp tục mà không dùng máy chủ One:",
    "en": "Goes on without the server One:",
}
NOBODY = {
    "ru": "Некому отправлять: списки пусты или все адреса в стоп-листе.",
    "vi": "Không có ai để gửi: danh sách trống hoặc mọi địa chỉ đều bị chặn.",
    "en": "Nobody to send to: the lists are empty or every address is suppressed.",
}
BY_STAFF = {"ru": "Сотрудниками", "vi": "Bởi nhân viên", "en": "By staff"}


def speak(person, language: str) -> None:
    person.user.language = language
    person.user.save(update_fields=["language"])


def russian(tenant) -> None:
    tenant.default_language = "ru"
    tenant.save(update_fields=["default_language"])


def page_text(client, mailing: Mailing) -> str:
    page = client.get(reverse("mailings:detail", args=[mailing.public_id])).content.decode()
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def test_the_pause_after_every_server_is_passed_over_names_each_in_the_readers_language(tenant_a, alice, bob):
    russian(tenant_a)
    one, two = {"enable_SMTPUTF8": False, "name": "One"}, {"enable_SMTPUTF8": False, "name": "Two"}
    with servers_in_order(tenant_a, one, two) as _servers:
        mailing = start(tenant_a, [server for server, _ in _servers], EMAILS, reply_to="josé@acme.test")
        with translation.override("en"):
            run_until_settled(mailing)
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.PAUSED
    # Its text in the organisation's language (cut at 300 characters), its
    # words naming both servers: it named only the last one.
    event = mailing.events.order_by("pk").last()
    assert event.note.startswith(f"{PAUSED['ru']} {REPLY_TO_NEEDS['ru'] % 'One'}"), event.note
    assert [words["p"].get("server") for words in event.note_words] == [None, "One", "Two", None]
    api = make_api(tenant_a)
    for person, language in ((alice, "vi"), (bob, "en")):
        speak(person, language)
        text = page_text(person.client, mailing)
        said = f"{PAUSED[language]} {REPLY_TO_NEEDS[language] % 'One'} {REPLY_TO_NEEDS[language] % 'Two'}"
        assert said in text, (language, text)
        assert GOES_ON[language] in text, language  # the passed-over server on the page, and the going-on note
        assert PAUSED["ru"] not in text and GOES_ON["ru"] not in text, language
        answer = api.get(f"/api/v1/mailings/{mailing.public_id}/", HTTP_ACCEPT_LANGUAGE=language).json()
        reasons = [row["reason"] for row in answer["passed_over"]]
        assert len(reasons) == 2 and all(reason.startswith(GOES_ON[language]) for reason in reasons[:1]), reasons


def test_a_scheduled_mailing_cancelled_for_nobody_says_so_in_the_readers_language(tenant_a, alice, bob):
    russian(tenant_a)
    mailing = Mailing.objects.create(
        tenant=tenant_a,
        name="m",
        template=make_template(tenant_a),
        status=Mailing.Status.SCHEDULED,
        scheduled_at=timezone.now() - timedelta(minutes=1),
    )
    with translation.override("en"):
        services.start_due_mailings()
    event = MailingEvent.objects.get(mailing=mailing)
    assert event.to_status == Mailing.Status.CANCELLED and event.note == NOBODY["ru"]
    for person, language in ((alice, "vi"), (bob, "en")):
        speak(person, language)
        assert NOBODY[language] in page_text(person.client, mailing), language


def test_a_staff_cancel_reads_in_the_readers_language(tenant_a, alice, staff_client):
    mailing = Mailing.objects.create(tenant=tenant_a, name="m", template=make_template(tenant_a))
    url = reverse("admin:mailing_mailing_changelist")
    staff_client.post(url, {"action": "cancel", "_selected_action": [mailing.pk]}, HTTP_ACCEPT_LANGUAGE="ru")
    assert MailingEvent.objects.get(mailing=mailing).note_words == [{"id": "By staff", "p": {}}]
    for language in ("vi", "en"):
        speak(alice, language)
        assert f"— {BY_STAFF[language]}" in page_text(alice.client, mailing), language


def test_a_row_written_before_words_were_kept_shows_its_stored_text(tenant_a, alice):
    mailing = Mailing.objects.create(tenant=tenant_a, name="m", template=make_template(tenant_a))
    services.transition(mailing=mailing, action="cancel", note="Старая заметка")
    MailingEvent.objects.filter(mailing=mailing).update(note_words=[])
    speak(alice, "vi")
    assert "— Старая заметка" in page_text(alice.client, mailing)
    MailingEvent.objects.filter(mailing=mailing).update(note_words=[{"id": "x"}, "junk"])
    assert "— Старая заметка" in page_text(alice.client, mailing)
