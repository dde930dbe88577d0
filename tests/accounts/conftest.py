from .webhook_helpers import committed, receiver  # noqa: F401 - fixtures for the webhook tests
