from django.apps import AppConfig


class ServersConfig(AppConfig):
    name = "servers"
    verbose_name = "Sending servers and bounce mailboxes"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the system checks
