"""A demo tenant for local development: a user, a server pointing at the
local SMTP sink that `make run` starts, a list of contacts, a template and a
draft mailing, so a first mailing really goes out in one click."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts import services
from accounts.models import User
from mailing import mailings
from mailing.models import Contact, ContactList, Mailing, MailTemplate
from servers.models import Security, SmtpServer

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
            tenant = services.tenant_create(name="Demo Company", owner=user)
            self._content(tenant, user)
        self.stdout.write(f"Log in at {settings.SITE_URL}/ as {DEMO_EMAIL} / {DEMO_PASSWORD}")
        self.stdout.write("You enrol an authenticator app (two-factor login) on first login.")
        self.stdout.write("Mailings → «Welcome (demo)» → Start now: the letters land in the SMTP sink (var/mailsink/).")

    def _content(self, tenant, user) -> None:
        server = SmtpServer(
            tenant=tenant, name="Local sink", sender_email="news@demo.example", sender_name="Demo Company",
            host="127.0.0.1", port=1025, security=Security.NONE, max_per_hour=30, max_per_day=500,
        )  # fmt: skip
        server.full_clean()
        server.save()
        customers = ContactList.objects.create(tenant=tenant, name="Customers")
        for i, name in enumerate(["Anna", "Boris", "Clara", "Dmitri", "Elena", "Fyodor", "Galina", "Igor"] * 5):
            contact = Contact.objects.create(tenant=tenant, email=f"{name.lower()}{i}@demo.example", first_name=name)
            contact.lists.add(customers)
        template = MailTemplate.objects.create(
            tenant=tenant,
            name="Welcome",
            subject="Welcome, {{ first_name }}",
            text_body="Hello {{ first_name }},\n\nthanks for being with us.\n\nUnsubscribe: {{ unsubscribe_url }}\n",
            html_body="<p>Hello <b>{{ first_name }}</b>,</p><p>thanks for being with us.</p>"
            '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>',
        )
        mailing = Mailing(tenant=tenant, name="Welcome (demo)", template=template)
        mailings.mailing_save(mailing=mailing, lists=[customers], servers=[server], by=user)
