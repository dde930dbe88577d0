"""A connection test's steps, error and hint are stored as words
(servers.words) and worded when read, in the reader's language: the test
runs in the background in the organisation's language, and its members
need not share that one."""

import pytest
from django.urls import reverse
from django.utils import translation

from servers import services
from servers.models import ConnectionTest
from tests.servers.factories import make_server
from tests.smtp_servers import smtp_server

pytestmark = pytest.mark.django_db
SAID = {  # a step's name, the error's start and the hint's start
    "ru": ("Проверка настроек", "Вход (AUTH)", "Сервер отклонил логин или пароль (535"),
    "vi": ("Kiểm tra cài đặt", "Đăng nhập (AUTH)", "Máy chủ từ chối tên đăng nhập hoặc mật khẩu (535"),
    "en": ("Check the settings", "Log in (AUTH)", "The server refused the login or password (535"),
}


def speak(person, language: str) -> None:
    person.user.language = language
    person.user.save(update_fields=["language"])


def test_a_failed_tests_steps_and_error_read_in_each_readers_language(tenant_a, alice, bob):
    tenant_a.default_language = "ru"
    tenant_a.save(update_fields=["default_language"])
    with smtp_server() as (controller, _):
        server = make_server(tenant_a, port=controller.port, password="wrong")
        test = ConnectionTest.objects.create(tenant=tenant_a, server=server)
        with translation.override("en"):
            services.connection_test_run(test_id=test.pk)
    test.refresh_from_db()
    assert test.status == ConnectionTest.Status.FAILED and test.error.startswith(SAID["ru"][2]), test.error
    assert [step["name"] for step in test.steps][:1] == [SAID["ru"][0]]
    for person, language in ((alice, "vi"), (bob, "en")):
        speak(person, language)
        page = person.client.get(reverse("servers:test", args=[test.public_id])).content.decode()
        data = person.client.get(reverse("servers:test_json", args=[test.public_id])).json()
        names = [step["name"] for step in data["steps"]]
        assert names[0] == SAID[language][0] and SAID[language][1] in names, (language, names)
        assert data["error"].startswith(SAID[language][2]), (language, data["error"])
        assert SAID[language][0] in page and SAID[language][2] in page and SAID["ru"][0] not in page, language


def test_steps_stored_before_words_were_kept_show_their_text(tenant_a, alice):
    steps = [{"name": "Проверка", "ok": False, "ms": 5, "detail": "Старый"}]
    test = ConnectionTest.objects.create(
        tenant=tenant_a, status=ConnectionTest.Status.FAILED, steps=steps, error="Ошибка", hint="Совет"
    )
    speak(alice, "vi")
    data = alice.client.get(reverse("servers:test_json", args=[test.public_id])).json()
    assert [(s["name"], s["detail"]) for s in data["steps"]] == [("Проверка", "Старый")]
    assert (data["error"], data["hint"]) == ("Ошибка", "Совет")
