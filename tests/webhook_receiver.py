"""A real HTTP receiver for webhook tests (http.server in a thread): it
checks each request's signature the way the README tells integrators to,
answers from a script of status codes (500 then 200, a redirect, a slow
answer), and records what arrived in order."""

import hashlib
import hmac
import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int
    verified: bool

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    port: int
    scheme: str = "http"
    host: str = "127.0.0.1"
    secret: str = ""  # set by the test once the endpoint exists
    answers: list[int] = field(default_factory=list)  # consumed in order; then 200
    delay: float = 0.0  # seconds before the answer's first byte
    answer_body: str = "thanks"
    received: list[Received] = field(default_factory=list)
    connections: int = 0  # accepted TCP connections, whatever came over them
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}/hooks/postroute?source=test"

    def verify(self, value: str, body: bytes) -> bool:
        """The README's check, written out independently of the product."""
        parts = dict(item.split("=", 1) for item in value.split(","))
        signed = parts["t"].encode() + b"." + body
        expected = hmac.new(self.secret.encode(), signed, hashlib.sha256).hexdigest()
        fresh = abs(time.time() - int(parts["t"])) < 300
        return fresh and hmac.compare_digest(expected, parts["v1"])

    def events(self, *, accepted_only: bool = False) -> list[dict[str, Any]]:
        return [r.event for r in self.received if not accepted_only or 200 <= r.answered < 300]

    def types(self) -> list[str]:
        return [e["type"] for e in self.events()]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with receiver.lock:
                status = receiver.answers.pop(0) if receiver.answers else 200
                verified = bool(receiver.secret) and receiver.verify(self.headers.get("Postroute-Signature", ""), body)
                receiver.received.append(Received(self.path, dict(self.headers), body, status, verified))
            if receiver.delay:
                time.sleep(receiver.delay)
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", f"http://127.0.0.1:{receiver.port}/elsewhere")
            payload = receiver.answer_body.encode()
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def webhook_receiver(*, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> Iterator[Receiver]:
    class Counting(ThreadingHTTPServer):
        def process_request(self, request, client_address) -> None:
            receiver.connections += 1
            super().process_request(request, client_address)

    server = Counting(("127.0.0.1", 0), _handler(Receiver(port=0)))
    receiver = Receiver(port=server.server_address[1], scheme="https" if tls else "http", host=host)
    server.RequestHandlerClass = _handler(receiver)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
