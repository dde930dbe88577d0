import signal
import threading
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from mailing.sink import MailSink


class Command(BaseCommand):
    help = "Run a local SMTP sink that keeps every letter (console and .eml files)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=1025)
        parser.add_argument("--dir", default=str(settings.VAR_DIR / "mailsink"))

    def handle(self, *args: object, host: str, port: int, dir: str, **options: object) -> None:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        with MailSink(host=host, port=port, directory=Path(dir), echo=True):
            self.stdout.write(f"SMTP sink on {host}:{port}; letters are kept in {dir}", ending="\n")
            self.stdout.flush()
            stop.wait()
