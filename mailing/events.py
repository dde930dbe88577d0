"""What mailing tells an organisation's webhooks (accounts.webhooks): each
event's data, built here where the objects are. `emit` costs one cache
read when the tenant has no endpoint for the event; the data functions run
only when one listens, after the transaction committed."""

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count

from accounts.webhooks import events as webhooks
from servers.events import server_data
from servers.models import SmtpServer

from . import limits
from .bounces.parser import feedback_of
from .models import BounceReport, Contact, ContactImport, Letter, Mailing, Suppression


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _mailing(mailing: Mailing) -> dict[str, Any]:
    return {"id": str(mailing.public_id), "name": mailing.name}


def _letter_report(letter: Letter, name: str, report: dict[str, Any]) -> dict[str, Any]:
    """A bounce's or a complaint's data: the letter, its mailing, what the
    report says (under `name`), and whether the address is now suppressed."""
    return {
        "letter": {"id": str(letter.public_id), "email": letter.email, "status": letter.status},
        "mailing": _mailing(Mailing.objects.only("public_id", "name").get(pk=letter.mailing_id)),
        name: report,
        "suppressed": Suppression.objects.of(letter.tenant_id, letter.email).exists(),
    }


def letter_bounced(report: BounceReport, letter: Letter) -> None:
    def data() -> dict[str, Any]:
        bounce = {
            "kind": report.kind,
            "status": report.status,
            "reason": report.reason[:500],
            "received_at": _when(report.received_at),
        }
        return _letter_report(letter, "bounce", bounce)

    webhooks.emit(tenant_id=letter.tenant_id, type=webhooks.LETTER_BOUNCED, data=data)


def letter_complained(report: BounceReport, letter: Letter) -> None:
    def data() -> dict[str, Any]:
        feedback_type, user_agent = feedback_of(report.diagnostic)
        complaint = {"feedback_type": feedback_type, "user_agent": user_agent, "received_at": _when(report.received_at)}
        return _letter_report(letter, "complaint", complaint)

    webhooks.emit(tenant_id=letter.tenant_id, type=webhooks.LETTER_COMPLAINED, data=data)


def contact_unsubscribed(suppression: Suppression) -> None:
    def data() -> dict[str, Any]:
        contact = Contact.objects.filter(tenant_id=suppression.tenant_id, email=suppression.email).first()
        return {
            "email": suppression.email,
            "contact": {"id": str(contact.public_id)} if contact else None,
            "at": _when(suppression.created_at),
        }

    webhooks.emit(tenant_id=suppression.tenant_id, type=webhooks.CONTACT_UNSUBSCRIBED, data=data)


def mailing_moved(mailing: Mailing, *, before: str, after: str, fields: dict[str, Any]) -> None:
    data = {
        "mailing": _mailing(mailing),
        "from": before,
        "to": after,
        "resume_at": _when(fields.get("resume_at")),  # type: ignore[arg-type]
    }
    webhooks.emit(tenant_id=mailing.tenant_id, type=webhooks.MAILING_STATE_CHANGED, data=data)
    if after == Mailing.Status.COMPLETED:
        webhooks.emit(tenant_id=mailing.tenant_id, type=webhooks.MAILING_COMPLETED, data=lambda: _completed(mailing))


def _completed(mailing: Mailing) -> dict[str, Any]:
    fresh = Mailing.objects.get(pk=mailing.pk)
    counts = dict(Letter.objects.filter(mailing=mailing).values_list("status").annotate(n=Count("pk")).order_by())
    letters = {status: counts.get(status, 0) for status in Letter.Status.values}
    return {
        "mailing": {
            **_mailing(fresh),
            "started_at": _when(fresh.started_at),
            "finished_at": _when(fresh.finished_at),
        },
        "letters": {"total": sum(letters.values()), **letters},
    }


# Which window a batch found spent, and how long until the same one may be
# told again: once per window, however many batches find it spent.
_WINDOWS = (
    ("hour", "hour_left", "hour_limit", "hour_used", timedelta(hours=1)),
    ("day", "day_left", "day_limit", "day_used", timedelta(days=1)),
    ("platform_quota", "tenant_day_left", "tenant_quota", "tenant_day_used", timedelta(days=1)),
    ("platform_quota", "group_day_left", "group_quota", "group_day_used", timedelta(days=1)),
)


def limit_reached(server: SmtpServer, tenant_id: int, usage: limits.Usage, *, now: datetime) -> None:
    """A server's hourly or daily limit, or the tenant's daily quota on a
    platform server, is spent. A max per minute is a pace, not a limit: it
    is not told."""
    for window, left, limit, used, span in _WINDOWS:
        if getattr(usage, left) == 0:
            resume = usage.resume_at if usage.resume_at != limits.NEVER else None
            data = {
                "server": server_data(server),
                "window": window,
                "limit": getattr(usage, limit),
                "used": getattr(usage, used),
                "resume_at": _when(resume),
            }
            once = (f"limit:{server.pk}:{window}", span)
            webhooks.emit(tenant_id=tenant_id, type=webhooks.SERVER_LIMIT_REACHED, data=data, once=once, at=now)
            return


def import_finished(import_id: int, tenant_id: int) -> None:
    def data() -> dict[str, Any]:
        imp = ContactImport.objects.select_related("contact_list").get(pk=import_id)
        target = imp.contact_list
        return {
            "import": {
                "id": str(imp.public_id),
                "file_name": imp.file_name,
                "status": imp.status,
                "rows": imp.rows_seen,
                "created": imp.created,
                "updated": imp.updated,
                "rejected": imp.rejected,
                "error": imp.error,
                "finished_at": _when(imp.finished_at),
            },
            "list": {"id": str(target.public_id), "name": target.name} if target else None,
        }

    webhooks.emit(tenant_id=tenant_id, type=webhooks.IMPORT_FINISHED, data=data)
