"""Give a staff user their first OTP device, so they can enter the admin:

python manage.py createsuperuser
python manage.py add_staff_otp admin@example.com
"""

import segno
from django.core.management.base import BaseCommand, CommandError
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import User, normalize_email_address


class Command(BaseCommand):
    help = "Create a TOTP device for a staff user and print its QR code and key."

    def add_arguments(self, parser) -> None:
        parser.add_argument("email")
        parser.add_argument("--replace", action="store_true", help="Delete the user's existing TOTP devices first.")

    def handle(self, *args: object, email: str, replace: bool, **options: object) -> None:
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
        segno.make(device.config_url, error="m").terminal(out=self.stdout, compact=True)
        self.stdout.write(f"\nKey (if you type it in): {device.config_url.split('secret=')[1].split('&')[0]}")
        self.stdout.write(self.style.SUCCESS(f"TOTP device created for {user.email}. Scan it, then log in."))
