from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ServersConfig(AppConfig):
    name = "servers"
    verbose_name = _("Sending servers and bounce mailboxes")

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the system checks
