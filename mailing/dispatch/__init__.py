"""The dispatcher: sends an active mailing's letters through the first
allowed server until its limit is spent, then the next, without pauses;
when every server is spent the mailing waits and resumes by itself.

One call of run_mailing() sends one batch through one server:

1. the first server of the mailing's order that may send is chosen:
   enabled, not failing, not resting, not held back for this tenant
   (rests); a first server with room whose connection slots are all taken
   is waited for, never skipped;
2. a connection slot is taken (max_connections per server, across workers);
3. room is reserved in the limit accounting (mailing.limits) and letters
   are claimed with a token (one UPDATE of rows chosen FOR UPDATE SKIP
   LOCKED, so two workers never take the same letter nor wait for each
   other); a claim has a lease, after which a dead worker's letters go back
   to the queue;
4. one SMTP connection carries the whole batch; each server reply is judged
   (replies): the letter is sent, fails, waits for a retry or goes back
   uncounted, and the server may rest, fail, or hold back this tenant;
   whatever raises, each letter ends with a result or back in the queue, and
   only letters that reached DATA count against the limit;
4a. on a fast server the batch goes on: its next letters are claimed while
   its last ones go, after the checks the next batch would make (ahead),
   and sent over a new connection;
5. when no server could send, the mailing is finished, waits until a known
   moment, or *cannot send* until someone fixes a server (run).

The caller (a Celery task) runs it again at once while it returns "more"."""

from .batch import Outcome, send_batch
from .chains import CHAIN_LEASE, free_chain_slots, hold_chains, needed_chain_slots, renew_chain, take_chain
from .claims import LEASE, claim
from .replies import Kind, Stage, judge
from .rests import usable_servers
from .results import requeue_expired_leases
from .run import active_mailing_ids, blocked_reasons, resume_time, run_mailing, wakeable
from .slots import connection_slot

__all__ = [
    "CHAIN_LEASE",
    "LEASE",
    "Kind",
    "Outcome",
    "Stage",
    "active_mailing_ids",
    "blocked_reasons",
    "claim",
    "connection_slot",
    "free_chain_slots",
    "hold_chains",
    "judge",
    "needed_chain_slots",
    "renew_chain",
    "requeue_expired_leases",
    "resume_time",
    "run_mailing",
    "send_batch",
    "take_chain",
    "usable_servers",
    "wakeable",
]
