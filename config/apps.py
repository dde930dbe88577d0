from django.apps import AppConfig


class OpsConfig(AppConfig):
    """The operations side of the platform (health, metrics, logs, deploy
    checks, retention): nothing tenants see, no models of its own."""

    name = "config"
    label = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        from . import checks, requestids  # noqa: F401 - registers checks and Celery signal handlers
