"""A server that talks slowly on purpose (a tarpit) cannot hold a worker:
opening a connection has one deadline in all, and each exchange the
dispatcher starts gets its own, however the server dribbles."""

import smtplib
import socket
import time

import pytest
from django.utils import translation

from servers.connections import open_smtp
from servers.deadlines import DeadlineExceeded
from servers.errors import diagnose
from servers.models import Security
from servers.netguard import PinnedSMTP
from tests.certs import make_certs
from tests.smtp_servers import (
    byte_by_byte,
    dribbled_handshake,
    endless_auth,
    endless_banner,
    endless_reply_to_data,
    silent_server,
    smtp_server,
    stops_reading_data,
    tarpit,
)

from .factories import make_server

pytestmark = pytest.mark.django_db

TIMEOUT = 1.0
MARGIN = 1.5  # the bound is TIMEOUT + MARGIN; a tarpit lasts 8 s


class Elapsed:
    def __enter__(self) -> "Elapsed":
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self.started


def open_within_timeout(server) -> tuple[BaseException, float]:
    with Elapsed() as elapsed, pytest.raises(Exception) as caught:
        open_smtp(server, timeout=TIMEOUT)
    return caught.value, elapsed.seconds


@pytest.mark.parametrize(
    "script", [endless_banner, byte_by_byte, endless_auth], ids=["220- lines", "one byte at a time", "endless AUTH"]
)
def test_opening_a_connection_to_a_tarpit_gives_up_at_the_timeout(tenant_a, script):
    with tarpit(script) as port:
        error, seconds = open_within_timeout(make_server(tenant_a, port=port))
    assert isinstance(error, DeadlineExceeded), repr(error)
    assert seconds < TIMEOUT + MARGIN
    diagnosis = diagnose(error, host="127.0.0.1", port=port, timeout=TIMEOUT)
    assert diagnosis.category == "timeout"
    assert "kept sending" in diagnosis.message and "never ends" in diagnosis.hint


def test_a_dribbled_tls_handshake_gives_up_at_the_timeout(tenant_a, tmp_path, settings):
    certs = make_certs(tmp_path / "certs")
    settings.SERVERS_EXTRA_CA_FILE = str(certs.ca_file)
    with tarpit(dribbled_handshake) as port:
        server = make_server(tenant_a, host="localhost", port=port, security=Security.SSL)
        error, seconds = open_within_timeout(server)
    assert isinstance(error, TimeoutError), repr(error)
    assert seconds < TIMEOUT + MARGIN
    assert diagnose(error, host="localhost", port=port, timeout=TIMEOUT).category == "timeout"


def test_an_endless_banner_after_a_good_tls_handshake_gives_up_at_the_timeout(tenant_a, tmp_path, settings):
    certs = make_certs(tmp_path / "certs")
    settings.SERVERS_EXTRA_CA_FILE = str(certs.ca_file)
    with tarpit(endless_banner, tls=certs.server_context()) as port:
        server = make_server(tenant_a, host="localhost", port=port, security=Security.SSL)
        error, seconds = open_within_timeout(server)
    assert isinstance(error, DeadlineExceeded), repr(error)
    assert seconds < TIMEOUT + MARGIN


def test_the_opening_comes_back_without_a_deadline(tenant_a):
    with smtp_server() as (controller, _):
        client = open_smtp(make_server(tenant_a, port=controller.port), timeout=TIMEOUT)
        try:
            assert client.time_left() is None
            time.sleep(TIMEOUT + 0.2)  # a batch goes on after the opening's time
            assert client.noop()[0] == 250
        finally:
            client.close()


# --- the per-letter deadline, on a connected client ----------------------------


def connected(port: int, *, timeout: float = 5.0) -> PinnedSMTP:
    client = PinnedSMTP("127.0.0.1", port, addresses=[(socket.AF_INET, ("127.0.0.1", port))], timeout=timeout)
    client.open()
    client.ehlo()
    return client


def test_a_reply_to_the_final_dot_that_never_ends_stops_at_the_letters_deadline():
    with tarpit(endless_reply_to_data) as port:
        client = connected(port)
        with Elapsed() as elapsed, pytest.raises(DeadlineExceeded) as caught:
            client.deadline_in(TIMEOUT)
            client.sendmail("from@mail.test", ["to@example.test"], b"Subject: hi\r\n\r\nHello.\r\n")
    assert elapsed.seconds < TIMEOUT + MARGIN
    assert caught.value.dribbling and caught.value.heard > 0
    assert client.sock is None  # closed: nothing more can be said on it


def test_a_server_that_stops_reading_our_data_cannot_hold_the_send():
    with tarpit(stops_reading_data) as port:
        client = connected(port)
        body = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 32_000  # 32 MB: more than the socket buffers
        with Elapsed() as elapsed, pytest.raises(DeadlineExceeded) as caught:
            client.deadline_in(TIMEOUT)
            client.sendmail("from@mail.test", ["to@example.test"], body)
    assert elapsed.seconds < TIMEOUT + MARGIN
    assert caught.value.doing == "send"
    assert "stopped taking what we sent" in diagnose(caught.value, host="127.0.0.1", port=port).message


def test_the_deadline_holds_across_commands_until_it_is_set_again():
    with smtp_server(auth=False) as (controller, _):
        client = connected(controller.port)
        try:
            client.deadline_in(0.5)
            assert client.noop()[0] == 250 and client.noop()[0] == 250  # within it: fine
            assert 0 < client.time_left() <= 0.5
            time.sleep(0.6)
            with pytest.raises(DeadlineExceeded):
                client.noop()  # no time left, even for a quick server
        finally:
            client.close()
        client = connected(controller.port)
        try:
            client.deadline_in(0.3)
            time.sleep(0.4)
            client.deadline_in(5)  # a new letter, a new deadline
            assert client.noop()[0] == 250
            client.clear_deadline()
            assert client.time_left() is None
        finally:
            client.close()


def test_without_a_deadline_each_read_still_waits_the_timeout_only():
    with silent_server() as port:
        client = PinnedSMTP("127.0.0.1", port, addresses=[(socket.AF_INET, ("127.0.0.1", port))], timeout=0.5)
        with Elapsed() as elapsed, pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
            client.open()
    assert elapsed.seconds < 0.5 + MARGIN


@pytest.mark.parametrize(("language", "within"), [("ru", "1,5 секунды"), ("vi", "1,5 giây"), ("en", "1.5 seconds")])
def test_a_deadline_with_a_fraction_is_written_as_the_language_writes_numbers(tenant_a, language, within):
    """ "1.5 секунды" had an English decimal point in Russian and Vietnamese."""
    with silent_server() as port, pytest.raises(Exception) as caught:
        open_smtp(make_server(tenant_a, port=port), timeout=1.5)
    with translation.override(language):
        message = diagnose(caught.value, host="127.0.0.1", port=port, timeout=1.5).message
    assert within in message, message
