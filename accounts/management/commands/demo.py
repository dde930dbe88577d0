from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts import services
from accounts.models import User

DEMO_EMAIL = "demo@postroute.localhost"
DEMO_PASSWORD = "postroute-demo-password"


class Command(BaseCommand):
    help = "Create a demo tenant and user for local development (never in production)."

    def handle(self, *args: object, **options: object) -> None:
        if not settings.DEBUG:
            raise CommandError("The demo account is for local development (DEBUG=1) only.")
        user = User.objects.filter(email=DEMO_EMAIL).first()
        if user is None:
            user = User.objects.create_user(DEMO_EMAIL, DEMO_PASSWORD, email_verified_at=timezone.now())
            services.tenant_create(name="Demo Company", owner=user)
        self.stdout.write(f"Log in as {DEMO_EMAIL} / {DEMO_PASSWORD}")
        self.stdout.write("You will enrol an authenticator app (two-factor login) on first login.")
