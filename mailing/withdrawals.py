"""Letters taken out of the queue when their address is suppressed.

A mailing's letters are made at its start for the addresses not suppressed
then. An address suppressed later (the unsubscribe link, a hard bounce, a
refusal of the address while sending, the page, the API) must get none of
the letters still waiting for it: they fail, with a note that says why, in
the transaction that suppresses the address, by one UPDATE for all the
addresses of the call. The dispatcher's claim is not touched: it never
sees them again (it claims only queued and deferred letters).

A letter a worker has already claimed (sending, with its claim token) is
left to that worker: it may go out, and if the server asks to retry it,
its retry may too. The claim and this UPDATE take the row one after the
other (the claim skips a row this UPDATE holds; this UPDATE, waiting for
a claim's row, finds it sending and passes), so a letter is either
withdrawn or sent, never both. A start whose letters are being made while
the address is suppressed does not see the suppression before it commits,
and this UPDATE does not see its letters: a suppression in that instant
misses them.

The notes are stored in English and shown in the reader's language
(mailing.dispatch.replies.shown_reply)."""

from collections.abc import Collection
from contextlib import suppress

from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef, Value
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_noop

from .mailings import transition
from .models import PENDING_LETTERS, Letter, Mailing, Suppression
from .models.mailings import FINISHED, RUNNING

L, R = Letter.Status, Suppression.Reason

WITHDRAWN_NOTES = {
    R.UNSUBSCRIBED: gettext_noop("Not sent: the address was suppressed after the mailing started (unsubscribed)."),
    R.HARD_BOUNCE: gettext_noop("Not sent: the address was suppressed after the mailing started (hard bounce)."),
    R.SOFT_BOUNCES: gettext_noop(
        "Not sent: the address was suppressed after the mailing started (repeated soft bounces)."
    ),
    R.MANUAL: gettext_noop("Not sent: the address was suppressed after the mailing started (added by hand)."),
    R.COMPLAINT: gettext_noop(
        "Not sent: the address was suppressed after the mailing started (a complaint: marked as spam)."
    ),
}
UNFINISHED = tuple(status for status in Mailing.Status.values if status not in FINISHED)
UNCLAIMED = PENDING_LETTERS
LEFT = (*UNCLAIMED, L.SENDING)


def withdraw_queued_letters(*, tenant_id: int, emails: Collection[str], reason: str) -> int:
    """Fail the tenant's unclaimed letters to `emails` (stored forms:
    mailing.contacts.normalize_email) in its mailings yet to finish, then
    complete those running mailings that have nothing left to send.
    Returns how many letters were withdrawn. Call it inside the
    suppression's transaction."""
    # Through the tenant's unfinished mailings, a few rows of the (tenant,
    # status) index, then the (mailing, lower(email)) index: never a scan
    # of the tenant's letters. The address in any case, as the suppression
    # holds (Suppression.objects.of): the letter to Ann@ goes when ann@
    # unsubscribes. A finished mailing's letters keep their history.
    open_mailings = Mailing.objects.filter(tenant_id=tenant_id, status__in=UNFINISHED).values("pk")
    mailboxes = [Lower(Value(email)) for email in emails]
    queued = Letter.objects.annotate(mailbox=Lower("email")).filter(
        mailing__in=open_mailings, mailbox__in=mailboxes, status__in=UNCLAIMED, claim_token__isnull=True
    )
    note = WITHDRAWN_NOTES.get(reason, WITHDRAWN_NOTES[R.MANUAL])
    withdrawn = queued.update(status=L.FAILED, last_reply=note, next_attempt_at=None)
    if withdrawn:
        _complete_emptied(tenant_id)
    return withdrawn


def _complete_emptied(tenant_id: int) -> None:
    """A running mailing whose last letters were withdrawn is done now: a
    waiting or blocked one would otherwise stay so until its resume time
    or for ever (the dispatcher wakes only mailings with letters due)."""
    left = Letter.objects.filter(mailing=OuterRef("pk"), status__in=LEFT)
    emptied = Mailing.objects.filter(tenant_id=tenant_id, status__in=RUNNING, preparing_since__isnull=True)
    now = timezone.now()
    for mailing in emptied.exclude(Exists(left)):
        with suppress(ValidationError):  # paused, cancelled or finished by someone else meanwhile
            transition(mailing=mailing, action="complete", finished_at=now)
