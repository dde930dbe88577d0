"""Files go only where a file is taken, the contact import, and only as
large as it takes (mailing/imports/uploads.py). Django's default upload handlers
write every file part of a multipart body, of any size, to the temporary
directory while the body is parsed, and the CSRF check parses it: a 60 MB
"file" posted to the login page reached the disk before anything refused it.

- A body larger than the page takes is refused with 413 before a byte of it
  is read: over plain HTTP the answer comes while the client is still
  sending.
- A smaller body with a file part, anywhere but the import page, is refused
  with 400 at that part: nothing of it is stored, in memory or on disk, for
  a visitor, a member or an owner.
- The import page stores one file, up to IMPORT_MAX_BYTES, and no more."""

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import MemoryFileUploadHandler, TemporaryFileUploadHandler
from django.test import Client
from django.urls import reverse

from mailing.models import ContactImport

pytestmark = pytest.mark.django_db
MB = 1024 * 1024
CSV = b"email\nann@example.com\n"


@pytest.fixture
def stored(settings, tmp_path, monkeypatch) -> Iterator[dict[str, int]]:
    """Bytes Django's upload handlers kept, in memory and in the temporary
    directory (an empty directory of its own, checked at the end too)."""
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "upload-tmp")
    settings.IMPORTS_DIR = tmp_path / "imports"
    Path(settings.FILE_UPLOAD_TEMP_DIR).mkdir()
    kept = {"memory": 0, "disk": 0, "files": 0}

    def counting(handler_class: type, key: str) -> None:
        receive, new_file = handler_class.receive_data_chunk, handler_class.new_file

        def receive_data_chunk(self, raw_data: bytes, start: int):
            result = receive(self, raw_data, start)
            if result is None:  # this handler took the chunk
                kept[key] += len(raw_data)
            return result

        def counted_new_file(self, *args, **kwargs):
            kept["files"] += 1
            return new_file(self, *args, **kwargs)

        monkeypatch.setattr(handler_class, "receive_data_chunk", receive_data_chunk)
        monkeypatch.setattr(handler_class, "new_file", counted_new_file)

    counting(MemoryFileUploadHandler, "memory")
    counting(TemporaryFileUploadHandler, "disk")
    yield kept
    assert list(Path(settings.FILE_UPLOAD_TEMP_DIR).iterdir()) == []


def a_file(size: int, name: str = "big.bin") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, b"x" * size, "application/octet-stream")


def test_a_20_mb_file_posted_to_the_login_page_is_refused_before_it_is_read(stored):
    started = time.perf_counter()
    response = Client().post(reverse("accounts:login"), {"email": "a@x.test", "password": "pw", "f": a_file(20 * MB)})
    elapsed = time.perf_counter() - started
    assert response.status_code == 413
    assert b"That request is too large" in response.content
    assert stored == {"memory": 0, "disk": 0, "files": 0}
    assert elapsed < 2, elapsed


def test_a_file_part_small_enough_to_pass_the_size_check_is_refused_where_no_file_is_taken(stored):
    # 3 MB: Django would have written it to the temporary directory (over
    # FILE_UPLOAD_MAX_MEMORY_SIZE), and it is under the 4 MiB of fields a form may send.
    response = Client().post(reverse("accounts:login"), {"email": "a@x.test", "password": "pw", "f": a_file(3 * MB)})
    assert response.status_code == 400
    assert stored == {"memory": 0, "disk": 0, "files": 0}


@pytest.mark.parametrize("who", ["alice", "bob"])
def test_signed_in_users_cannot_send_a_file_to_any_other_page(request, stored, who):
    person = request.getfixturevalue(who)
    for url in (
        reverse("templates:add"),
        reverse("contacts:add"),
        reverse("contacts:list_create"),
        reverse("mailings:new"),
    ):
        response = person.client.post(url, {"name": "x", "f": a_file(64 * 1024, "contacts.csv")})
        assert response.status_code == 400, (url, response.status_code)
    assert stored == {"memory": 0, "disk": 0, "files": 0}


def test_forms_without_files_still_work_as_multipart(alice):
    """The test client, like a form with enctype="multipart/form-data",
    sends every POST as multipart: fields alone pass."""
    response = alice.client.post(reverse("contacts:list_create"), {"name": "Customers"})
    assert response.status_code == 302


def test_the_import_page_takes_one_file_and_refuses_a_second(alice, stored):
    files = {"file": SimpleUploadedFile("contacts.csv", CSV, "text/csv"), "extra": a_file(3 * MB)}
    response = alice.client.post(reverse("contacts:import_upload"), files)
    assert response.status_code == 400
    assert stored["disk"] == len(CSV)  # the first file; the second was refused before a byte of it
    assert not ContactImport.objects.exists()
    response = alice.client.post(reverse("contacts:import_upload"), {"file": SimpleUploadedFile("c.csv", CSV)})
    assert response.status_code == 302
    assert ContactImport.objects.get().file_size == len(CSV)


def test_the_import_page_refuses_a_body_over_its_limit_before_reading_it(alice, settings, stored):
    settings.IMPORT_MAX_BYTES = 1 * MB
    response = alice.client.post(reverse("contacts:import_upload"), {"file": a_file(2 * MB, "contacts.csv")})
    assert response.status_code == 413
    assert "A contact file may be up to 1.0\xa0MB" in response.content.decode()
    assert stored == {"memory": 0, "disk": 0, "files": 0}
    assert not ContactImport.objects.exists()


def test_over_http_the_refusal_comes_while_the_client_is_still_sending(live_server):
    """A real server and a client that has sent 64 KB of a 20 MB body: the
    answer is there without the rest (the old code waited for all of it)."""
    boundary = "XyZ"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="f"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    host, port = live_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            (
                f"POST /accounts/login/ HTTP/1.1\r\nHost: {host}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {20 * MB}\r\n\r\n"
            ).encode()
            + head
            + b"x" * (64 * 1024)
        )
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
