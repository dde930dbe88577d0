"""Give a staff user their first OTP device, so they can enter the admin:

python manage.py createsuperuser
python manage.py add_staff_otp admin@example.com
"""

import io
import os
import tempfile

import segno
from django.core.management.base import BaseCommand, CommandError
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import User, normalize_email_address


class Command(BaseCommand):
    help = "Create a TOTP device for a staff user and print its QR code and key."

    def add_arguments(self, parser) -> None:
        parser.add_argument("email")
        parser.add_argument("--replace", action="store_true", help="Delete the user's existing TOTP devices first.")
        parser.add_argument("--png", help="Where to save the QR code as a PNG (default: a temp file).")

    def handle(self, *args: object, email: str, replace: bool, png: str | None, **options: object) -> None:
        user = User.objects.filter(email=normalize_email_address(email)).first()
        if user is None:
            raise CommandError(f"No user with the address {email}.")
        if not user.is_staff:
            raise CommandError(f"{email} is not staff; tenant users enrol in the browser.")
        existing = TOTPDevice.objects.filter(user=user, confirmed=True)
        if existing.exists() and not replace:
            raise CommandError(f"{email} already has a device; pass --replace to make a new one.")
        existing.delete()
        device = TOTPDevice.objects.create(user=user, name="Staff authenticator", confirmed=True)
        qr = segno.make(device.config_url, error="m")
        # In one write: the command's stdout would end every row segno writes with a newline of its own.
        drawing = io.StringIO()
        qr.terminal(out=drawing, compact=True)
        self.stdout.write(drawing.getvalue(), ending="")
        path = self._save_png(qr, png)
        self.stdout.write(f"\nThe same QR code as a picture: {path} (delete it once scanned)")
        self.stdout.write(f"\nKey (if you type it in): {device.config_url.split('secret=')[1].split('&')[0]}")
        self.stdout.write(self.style.SUCCESS(f"TOTP device created for {user.email}. Scan it, then log in."))

    def _save_png(self, qr: segno.QRCode, path: str | None) -> str:
        """Readable by its owner only: it holds the key."""
        if path is None:
            fd, path = tempfile.mkstemp(prefix="staff-otp-", suffix=".png")
            os.close(fd)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
            qr.save(out, kind="png", scale=8)
        return path
