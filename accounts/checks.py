"""Deploy checks of the login throttle's settings (`manage.py check --deploy`)."""

from collections.abc import Sequence

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register


@register(Tags.security, deploy=True)
def proxy_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: object) -> list[CheckMessage]:
    """Behind a proxy, REMOTE_ADDR is the proxy's address: with NUM_PROXIES=0
    every visitor would share one client address, and five wrong passwords
    from anyone would lock everyone out of the login."""
    if settings.BEHIND_PROXY and settings.NUM_PROXIES < 1:
        return [
            Error(
                "BEHIND_PROXY is on but NUM_PROXIES is 0: the login throttle would take the proxy's address for "
                "every client's and lock everybody out together.",
                hint="Set NUM_PROXIES to the number of proxies in front of the app that append to X-Forwarded-For "
                "(1 for one nginx or Caddy).",
                id="accounts.E001",
            )
        ]
    return []
