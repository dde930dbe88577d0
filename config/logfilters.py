"""Logging filters named in settings.LOGGING."""

import logging


class ForbiddenOneLine(logging.Filter):
    """A 403 is an answer the app chose (a role that may not write), not a
    fault: Django's "Forbidden (Permission denied): /path" line stays, its
    traceback goes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", None) == 403:
            record.exc_info = None
            record.exc_text = None
        return True
