import os

from django.core.asgi import get_asgi_application

from config import production

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_asgi_application()
production.refuse_development_stand_ins()  # before the first request: no SQLite, no folder broker
