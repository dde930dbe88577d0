from django.core.management.base import BaseCommand

from servers.services import rotate_secrets


class Command(BaseCommand):
    help = "Re-encrypt SMTP/IMAP passwords and webhook secrets with the newest key of SECRETS_ENCRYPTION_KEYS."

    def handle(self, *args: object, **options: object) -> None:
        count = rotate_secrets()
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {count} secret(s) with the newest key."))
