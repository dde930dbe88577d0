"""Logging: one JSON object a line with LOG_FORMAT=json (for the log
shipper), readable lines otherwise, the request/tenant/mailing/server ids on
every record either way, and none of the housekeeping ticks' chatter at
INFO."""

import logging

# Beat's ticks run every few seconds: "sending due task", "received" and
# "succeeded" lines for them at INFO would bury everything else.
QUIET_TASKS = ("mailing.tasks.dispatch_tick", "config.tasks.heartbeat", "servers.tasks.fail_stale_connection_tests")


class QuietTicks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO or not record.name.startswith("celery"):
            return True
        message = record.getMessage()
        return not any(name in message for name in QUIET_TASKS)


def config(*, json: bool, level: str) -> dict:
    if json:
        logging.captureWarnings(True)  # a warning is a log line too, not loose text on stderr
    fields = "%(request_id)s %(tenant_id)s %(mailing_id)s %(server_id)s"
    formatters = {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": f"%(asctime)s %(levelname)s %(name)s %(message)s {fields} %(process)d",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {"()": "config.requestids.ContextFilter"},
            "quiet_ticks": {"()": "config.logs.QuietTicks"},
        },
        "formatters": formatters,
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json" if json else "plain",
                "filters": ["context", "quiet_ticks"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"mail.log": {"level": "WARNING"}},  # aiosmtpd's per-command chatter
    }
