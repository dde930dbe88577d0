"""Dispatch: what one worker box sends, against the strongest honest bounds.

Every worker here is started with the Procfile's `dispatch` command (a pool
of threads, one a SMTP conversation, sharing a few database sessions), as
production runs it, with beat beside it. The sink is aiosmtpd on uvloop in
its own process and only counts (it keeps each letter's Message-ID, to
check that every letter arrived exactly once).

1. Limits under concurrency: 2 worker processes, 4 chains, 3 servers limited
   to 100, 150 and 50 an hour, 1,000 letters: letters per server (exactly
   100/150/50), the overshoot (0) and the mailing's state.
2. Cost per letter: 10,000 letters of ~1 KB, one server, 1, 2 (three
   times: the median is printed) and 8 conversations, each against a raw
   smtplib loop sending pre-built message bytes over one connection to the
   same kind of sink (Postroute's own letters, made by its builder before
   the clock starts: the sink does the same work for both; the loop with
   its own shorter letters, the bound before 2026-12-05, is printed
   beside it once), measured right before and right after it: the
   machine's speed drifts between minutes, and the faster of the two is
   the bound (a slow minute of the raw loop would flatter the ratio). Then
   the same letters sent in this process by the dispatcher itself with a
   timer on each stage (claim, limits, build, SMTP, record), in
   microseconds per letter.
3. Latency: a proxy delays every chunk by 25 ms each way (a 50 ms round
   trip; the sink offers PIPELINING, as the big providers do); 20 tenants x
   1 server x 100 letters, and 200 tenants x 1 server x 20 letters. Printed:
   letters/s, the latency bound (every conversation the servers allow
   running side by side at 1 round trip a letter, the best RFC 2920 allows:
   each letter's envelope goes with the final dot of the one before; plus
   the greeting, EHLO and the first envelope), the same at 2 round trips a
   letter (the issue's, for comparison), the CPU bound (the raw loop's rate, the faster of its runs right
   before and right after the case), the ratio to the lower bound,
   and the most PostgreSQL sessions the box held."""

import os
import smtplib
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage

from common import ROOT, setup_django
from sinks import DelayProxy, Sink

N = int(os.environ.get("BENCH_LETTERS", "10000"))
BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/14")
BODY = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 16)[:900]
DELAY = 0.025  # each way
# Dispatch processes on the box: one a core (threads share one interpreter).
PROCESSES = int(os.environ.get("BENCH_DISPATCH_PROCESSES", os.cpu_count() or 1))


def raw_loop(port: int, count: int, *, own: bool = False) -> float:
    """The baseline: pre-built bytes, one connection, smtplib. The bytes
    are Postroute's own letters (postroute_letters): the sink does the same
    work for the loop as for the pipeline. `own`: the loop's own letters
    instead (EmailMessage, the bound before 2026-12-05), printed beside it:
    shorter by Postroute's headers (Message-ID, the letter's id,
    List-Unsubscribe and its POST, Date, MIME-Version) and its unsubscribe
    link, they cost the sink about 7% less a letter."""
    letters = own_letters(count) if own else postroute_letters()[:count]
    client = smtplib.SMTP("127.0.0.1", port)
    started = time.perf_counter()
    for sender, to, data in letters:
        client.sendmail(sender, [to], data)
    elapsed = time.perf_counter() - started
    client.quit()
    return len(letters) / elapsed


def own_letters(count: int) -> list[tuple[str, str, bytes]]:
    letters = []
    for i in range(count):
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "a@example.com", f"r{i}@example.com", f"Hello {i}"
        message["Message-ID"] = f"<raw-{i}@example.com>"
        message.set_content(BODY)
        data = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
        letters.append(("a@example.com", f"r{i}@example.com", data))
    return letters


_POSTROUTE_LETTERS: list[tuple[str, str, bytes]] = []


def postroute_letters() -> list[tuple[str, str, bytes]]:
    """N letters as Postroute makes them for the cost case (the same
    template, the same kind of tenant and server: seed), with their
    envelope sender, made once by its builder before any clock starts."""
    if not _POSTROUTE_LETTERS:
        from django.utils import timezone

        from accounts.models import Tenant
        from mailing import dispatch, mailings
        from mailing.dispatch.messages import Builder
        from mailing.models import Letter, Mailing

        mailing = seed(RAW_SLUG, [1], N)
        dispatch.hold_chains(mailing.pk, until=timezone.now() + timedelta(hours=1))  # no worker sends them
        mailings.mailing_start(mailing=mailing)
        mailing = Mailing.objects.select_related("template").get(pk=mailing.pk)
        server = mailing.server_links.get().server
        builder = Builder(server, mailing)
        _POSTROUTE_LETTERS.extend(
            (server.sender_email, letter.email, builder.wire(letter))
            for letter in Letter.objects.filter(mailing=mailing).order_by("pk")
        )
        Mailing.objects.filter(tenant__slug=RAW_SLUG).delete()
        Tenant.objects.filter(slug=RAW_SLUG).delete()
    return _POSTROUTE_LETTERS


RAW_SLUG = "bench-raw-letters"


def seed(slug: str, ports: list[int], count: int, *, limits=None, max_connections: int | None = None):
    from django.db import connection

    from accounts.models import Tenant
    from mailing import mailings
    from mailing.models import Contact, ContactList, Mailing, MailTemplate
    from servers.models import Security, SmtpServer

    tenant = Tenant.objects.create(name=slug, slug=slug)
    contact_list = ContactList.objects.create(tenant=tenant, name="All")
    Contact.objects.bulk_create(
        Contact(tenant=tenant, email=f"r{i}@{slug}.example.com", first_name=f"R{i}") for i in range(count)
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO mailing_contact_lists (contact_id, contactlist_id) SELECT id, %s FROM mailing_contact "
            "WHERE tenant_id = %s",
            [contact_list.pk, tenant.pk],
        )
    extra = {"max_connections": max_connections} if max_connections else {}
    servers = [
        SmtpServer.objects.create(
            tenant=tenant,
            name=f"sink{i}",
            sender_email=f"news@{slug}.example.com",
            host="127.0.0.1",
            port=port,
            security=Security.NONE,
            priority=i,
            max_per_hour=(limits or [None] * len(ports))[i],
            **extra,
        )
        for i, port in enumerate(ports)
    ]
    template = MailTemplate.objects.create(
        tenant=tenant, name="t", subject="Hello {{ first_name }}", text_body=BODY + "\n{{ unsubscribe_url }}"
    )
    mailing = Mailing(tenant=tenant, name="bench", template=template)
    mailings.mailing_save(mailing=mailing, lists=[contact_list], servers=servers)
    return mailing


def clean() -> None:
    from accounts.models import Tenant
    from mailing.models import Mailing

    Mailing.objects.filter(tenant__slug__startswith="bench-").delete()
    Tenant.objects.filter(slug__startswith="bench-").delete()


class Box:
    """Dispatch workers (the Procfile's command) and beat, as one box runs them."""

    def __init__(self, workers: int = 1, *, beat: bool = True) -> None:
        from config.processes import procfile_command, with_option

        self.env = {**os.environ, "CELERY_BROKER_URL": BROKER, "DEBUG": "0", "DEPLOYMENT_MODE": "self_hosted",
                    "SERVERS_ALLOW_PRIVATE_HOSTS": "1", "ALLOWED_HOSTS": "127.0.0.1"}  # fmt: skip
        argv, variables = procfile_command("dispatch", self.env)
        self.env.update(variables)
        argv = with_option(with_option(argv, "-Q", "dispatch,default"), "--loglevel", "warning")
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        self.argv = argv
        # libpq names each process's sessions (Sessions tells the dispatch
        # workers' apart from beat's).
        self.procs = [
            subprocess.Popen(with_option(argv, "-n", f"bench{i}@%h"), cwd=ROOT, env={**self.env, "PGAPPNAME": DISPATCH})  # noqa: S603
            for i in range(workers)
        ]
        if beat:
            schedule = f"/tmp/postroute-bench-beat-{os.getpid()}"  # noqa: S108
            beat_argv, _ = procfile_command("beat", self.env)
            beat_argv = [*with_option(beat_argv, "--loglevel", "warning"), "-s", schedule]
            self.procs.append(subprocess.Popen(beat_argv, cwd=ROOT, env={**self.env, "PGAPPNAME": "postroute-beat"}))  # noqa: S603
        time.sleep(5)  # connected to the broker

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(60)


DISPATCH = "postroute-dispatch"


class Sessions:
    """The most PostgreSQL sessions of the benchmark's database held by
    others than this process (`most`: the dispatch workers and beat), and by
    the dispatch workers alone (`dispatch`), sampled every 50 ms."""

    def __init__(self) -> None:
        import psycopg
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            self.own = [cursor.fetchone()[0]]
        self.conn = psycopg.connect(**connection.get_connection_params(), autocommit=True)
        self.own.append(self.conn.info.backend_pid)
        self.most, self.dispatch, self.stopped = 0, 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        query = (
            "SELECT count(*), count(*) FILTER (WHERE application_name = %s) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> ALL(%s)"
        )
        while not self.stopped.wait(0.05):
            every, dispatch = self.conn.execute(query, [DISPATCH, self.own]).fetchone()
            self.most, self.dispatch = max(self.most, every), max(self.dispatch, dispatch)

    def stop(self) -> int:
        self.stopped.set()
        self.thread.join()
        self.conn.close()
        return self.most


def wait_sent(mailings, total: int, sink: Sink, seconds: float = 600) -> None:
    """Until every letter is recorded as sent: the sink's count is watched
    while they go, and the database is asked only once the sink has them
    all (asking it 20 times a second took CPU from the box being measured)."""
    from mailing.models import Letter

    ids = [m.pk for m in mailings]
    deadline = time.monotonic() + seconds
    while sink.received.value < total or (
        Letter.objects.filter(mailing_id__in=ids, status=Letter.Status.SENT).count() < total
    ):
        if time.monotonic() > deadline:
            raise RuntimeError("the letters did not all go out in time")
        time.sleep(0.01 if sink.received.value < total else 0.05)


def limits_under_concurrency() -> None:
    from mailing import mailings, tasks
    from mailing.models import Letter, Mailing

    limits = [100, 150, 50]
    sinks = [Sink() for _ in limits]
    for sink in sinks:
        sink.__enter__()
    mailing = seed("bench-limits", [s.port for s in sinks], 1000, limits=limits, max_connections=1)
    box = Box(2, beat=False)
    try:
        mailings.mailing_start(mailing=mailing)
        for _ in range(3):
            tasks.send_mailing.delay(mailing.pk)
        deadline = time.monotonic() + 120
        while Mailing.objects.get(pk=mailing.pk).status != Mailing.Status.WAITING and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        box.stop()
    for sink in sinks:
        sink.__exit__()
    per_server = [len(sink.ids) for sink in sinks]
    mailing.refresh_from_db()
    overshoot = sum(max(0, got - limit) for got, limit in zip(per_server, limits, strict=True))
    sent = Letter.objects.filter(mailing=mailing, status=Letter.Status.SENT).count()
    until = f" until {mailing.resume_at:%H:%M:%S}" if mailing.resume_at else ""
    print(f"1. limits 100/150/50, 2 workers, 4 chains: letters per server {per_server}, overshoot {overshoot}, "
          f"recorded sent {sent}, mailing {mailing.get_status_display().lower()}{until}")  # fmt: skip
    clean()


def commit_time(durable: bool) -> float:
    """Seconds one autocommitted UPDATE takes: with durable results, one
    conversation cannot go faster than one such commit a letter (the
    duplicate bound: a letter's result is on disk before the next is
    accepted)."""
    import psycopg
    from django.db import connection

    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as conn:
        # A logged table (a temporary one would not be written to the WAL).
        conn.execute("DROP TABLE IF EXISTS bench_commit_time")
        conn.execute("CREATE TABLE bench_commit_time (id int PRIMARY KEY, n int)")
        conn.execute("INSERT INTO bench_commit_time VALUES (1, 0)")
        conn.execute(f"SET synchronous_commit TO {'on' if durable else 'off'}")
        started = time.perf_counter()
        for _ in range(300):
            conn.execute("UPDATE bench_commit_time SET n = n + 1 WHERE id = 1")
        elapsed = (time.perf_counter() - started) / 300
        conn.execute("DROP TABLE bench_commit_time")
        return elapsed


def pipeline(conversations: int, *, durable: bool = True) -> tuple[float, list[str], float, "WalSyncs"]:
    """N letters through one worker process holding `conversations` SMTP
    connections to one server."""
    from django.conf import settings

    from mailing import mailings

    default_chains, settings.DISPATCH_CHAINS = settings.DISPATCH_CHAINS, conversations  # chains the start queues
    os.environ["DISPATCH_CHAINS"] = str(conversations)
    os.environ["DISPATCH_DURABLE_RESULTS"] = "1" if durable else "0"
    try:
        with Sink() as sink:
            mailing = seed(f"bench-cost{conversations}", [sink.port], N, max_connections=conversations)
            box = Box(1)
            try:
                cpu = cpu_seconds(box.procs[0].pid)
                wal = WalSyncs.now()
                started = time.perf_counter()
                mailings.mailing_start(mailing=mailing)
                wait_sent([mailing], N, sink)
                rate = N / (time.perf_counter() - started)
                cpu = cpu_seconds(box.procs[0].pid) - cpu
                wal = WalSyncs.now() - wal
            finally:
                box.stop()
    finally:
        del os.environ["DISPATCH_CHAINS"], os.environ["DISPATCH_DURABLE_RESULTS"]
        settings.DISPATCH_CHAINS = default_chains
    clean()
    return rate, sink.ids, cpu / N, wal


@dataclass
class WalSyncs:
    """PostgreSQL's flushes of its write-ahead log to disk (pg_stat_wal, the
    whole server's), and the milliseconds they took when the benchmark's
    database times them (timed_wal_syncs). With durable results every
    conversation waits for one before its next letter is accepted."""

    count: int = 0
    ms: float | None = None

    @classmethod
    def now(cls) -> "WalSyncs":
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT wal_sync, wal_sync_time FROM pg_stat_wal")
            count, ms = cursor.fetchone()
        return cls(count, ms if TIMED_WAL_SYNCS else None)

    def __sub__(self, other: "WalSyncs") -> "WalSyncs":
        ms = None if self.ms is None or other.ms is None else self.ms - other.ms
        return WalSyncs(self.count - other.count, ms)

    def per_letter(self) -> str:
        timed = f", {self.ms / self.count * 1e3:,.0f} us each" if self.ms is not None and self.count else ""
        return f"{self.count / N:.2f} WAL flushes to disk a letter{timed}"


TIMED_WAL_SYNCS = False


def time_wal_syncs() -> None:
    """Have the benchmark's own (fresh) database time its sessions' WAL
    flushes (track_wal_io_timing, a superuser's setting; without it the
    flushes are only counted)."""
    global TIMED_WAL_SYNCS
    from django.db import DatabaseError, connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_database()")
            cursor.execute(f'ALTER DATABASE "{cursor.fetchone()[0]}" SET track_wal_io_timing = on')
        TIMED_WAL_SYNCS = True
    except DatabaseError:
        pass


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def baseline(count: int = N, *, own: bool = False) -> float:
    """The raw loop against a fresh sink, measured right before and right
    after the case it is compared with: this machine's speed moves by a
    third from one minute to the next, so a ratio means something only
    between neighbours, and the faster neighbour is the bound."""
    with Sink() as sink:
        return raw_loop(sink.port, count, own=own)


def cost_per_letter() -> None:
    time_wal_syncs()
    durable, quick = commit_time(True), commit_time(False)
    print(f"2. a commit takes {durable * 1e3:.2f} ms on disk, {quick * 1e3:.2f} ms not waiting for it: one "
          f"conversation with durable results sends at most {1 / durable:,.0f} letters/s")  # fmt: skip
    # The default is measured three times: one run moves by ±0.1 with the
    # machine, and the median of three less.
    runs = [
        ("1 conversation", 1, True),
        ("1 conversation, not waiting for the disk", 1, False),
        *[("2 conversations (the default)", 2, True)] * 3,
        ("8 conversations", 8, True),
    ]
    # The bound's letters against the loop's own (the bound before
    # 2026-12-05), alternately: the same minute for both.
    ours, own = [], []
    for _ in range(2):
        ours.append(baseline())
        own.append(baseline(own=True))
    sizes = sum(len(data) for *_, data in postroute_letters()) / N, len(own_letters(1)[0][2])
    print(f"   the raw loop with Postroute's letters (the bound, {sizes[0]:,.0f} bytes a letter): "
          f"{' / '.join(f'{rate:,.0f}' for rate in ours)} letters/s; with its own letters ({sizes[1]:,} bytes, "
          f"the bound before 2026-12-05): {' / '.join(f'{rate:,.0f}' for rate in own)} letters/s")  # fmt: skip
    defaults = []
    after = baseline()
    for label, conversations, is_durable in runs:
        before = after  # the run after one case is the run before the next
        rate, ids, cpu, wal = pipeline(conversations, durable=is_durable)
        after = baseline()
        raw = max(before, after)
        if conversations == 2:
            defaults.append(rate / raw)
        print(f"   Postroute, 1 worker, {label}: {rate:8,.0f} letters/s  ratio {rate / raw:.2f} to the raw smtplib "
              f"loop, the faster of its runs right before and after ({before:,.0f} / {after:,.0f} letters/s: "
              f"pre-built bytes, one connection, the same sink); the worker's CPU {cpu * 1e6:,.0f} us a letter "
              f"(received {len(ids):,}, unique {len(set(ids)):,}; includes making the letters); "
              f"{wal.per_letter()}")  # fmt: skip
    print(f"   the default's ratio, median of {len(defaults)} runs: {sorted(defaults)[len(defaults) // 2]:.2f}")
    stages()


AHEAD = "build ahead"


def stages() -> None:
    """The same letters sent by the dispatcher in this process, each stage
    timed (record: sending a letter's result over the lane; record answer:
    reading it, inside the next letter's SMTP; the writer thread's
    commits, of any other result, beside it)."""
    from django.conf import settings
    from django.utils import timezone

    from mailing import dispatch, limits, mailings
    from mailing.dispatch import ahead, batch, lane, recorder

    spent: dict[str, float] = defaultdict(float)
    in_smtp = []  # the exchange under way: a letter made meanwhile is made ahead

    def timed(module, name: str, stage: str) -> None:
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            where = AHEAD if stage == "build" and in_smtp else stage
            if threading.current_thread().name == "letter-claimer":
                where = f"{stage} ahead"  # a batch's next letters, claimed beside SMTP
            if stage == "SMTP":
                in_smtp.append(1)
            try:
                return original(*args, **kwargs)
            finally:
                spent[where] += time.perf_counter() - started
                if stage == "SMTP":
                    in_smtp.pop()

        setattr(module, name, wrapper)

    timed(ahead, "claim", "claim")
    timed(limits, "reserve", "limits")
    timed(limits, "release", "limits")
    timed(batch.Builder, "wire", "build")
    timed(batch, "envelope", "build")
    timed(batch, "exchange", "SMTP")
    timed(recorder, "_commit", "record on the writer thread")
    timed(lane.Lane, "_launch", "record")
    timed(lane.Lane, "_land", "record answer")
    settings.DISPATCH_RECORD_THREAD = True
    with Sink() as sink:
        mailing = seed("bench-stages", [sink.port], N, max_connections=1)
        dispatch.hold_chains(mailing.pk, until=timezone.now() + timedelta(hours=1))  # no worker takes them
        mailings.mailing_start(mailing=mailing)
        started = time.perf_counter()
        while dispatch.run_mailing(mailing_id=mailing.pk) == "more":
            pass
        elapsed = time.perf_counter() - started
    per = {stage: seconds / N * 1e6 for stage, seconds in spent.items()}
    beside = ("record on the writer thread", "record answer")  # another thread's, or inside SMTP
    other = elapsed / N * 1e6 - sum(v for k, v in per.items() if k not in beside and not k.endswith(" ahead"))
    print(
        f"   in one thread, {N / elapsed:,.0f} letters/s; per letter (us): "
        + ", ".join(f"{k} {v:.0f}" for k, v in per.items())
        + f", the rest {other:.0f} (record: the lane's send of a letter's result; its answer is read inside the "
        "next letter's SMTP; a letter is mostly made while "
        "the server takes the one before, inside SMTP; a batch's next letters are claimed, with their room, beside "
        "its last ones: 'ahead')"
    )
    clean()


def latency(tenants: int, letters: int, before: float) -> float:
    """The case against its bounds; `before` is the raw loop's rate right
    before it, and the rate of its run right after is returned (the next
    case's `before`)."""
    from django.utils import timezone

    from mailing import dispatch, mailings, tasks
    from mailing.models import DispatchChain

    with Sink(pipelining=True) as sink, DelayProxy(sink.port, DELAY) as proxy:
        made = [seed(f"bench-t{i}", [proxy.port], letters) for i in range(tenants)]
        for mailing in made:  # the letters are made beforehand (bench_mailing_start measures that)
            dispatch.hold_chains(mailing.pk, until=timezone.now() + timedelta(hours=1))  # beat's first tick too
            mailings.mailing_start(mailing=mailing)
        box = Box(PROCESSES)
        sessions = Sessions()
        workers = box.procs[:PROCESSES]
        try:
            # What each start does in its web process (mailings._kick): take
            # its chains' slots, then queue a task a chain. The slots are
            # taken before the clock starts: 200 starts one after another in
            # this one process took 1.6-3.2 s, during which the box waited
            # for work that 200 tenants' web requests would have given it
            # side by side; the tasks are queued on the clock.
            DispatchChain.objects.filter(mailing__in=made).update(until=None)
            chains = [(m.pk, slot) for m in made for slot in dispatch.needed_chain_slots(m.pk)]
            cpu = sum(cpu_seconds(w.pid) for w in workers)
            started = time.perf_counter()
            for mailing_id, slot in chains:
                tasks.send_mailing.delay(mailing_id, slot)
            kicked = time.perf_counter() - started
            wait_sent(made, tenants * letters, sink)
            elapsed = time.perf_counter() - started
            cpu = sum(cpu_seconds(w.pid) for w in workers) - cpu
        finally:
            most = sessions.stop()
            dispatching = sessions.dispatch
            box.stop()
    after = baseline()
    cpu_bound = max(before, after)
    from django.conf import settings

    from servers.models import SmtpServer

    total = tenants * letters
    per_server = min(SmtpServer._meta.get_field("max_connections").default, settings.DISPATCH_CHAINS)
    rtt = 2 * DELAY
    each = -(-letters // per_server)  # a conversation's letters
    # Greeting + EHLO and the first envelope, then 1 round trip a letter
    # (its final dot, the next envelope behind it); at 2 a letter, without.
    latency_bound = total / (2.5 * rtt + each * rtt)
    two_trips = total / (1.5 * rtt + each * 2 * rtt)
    bound = min(latency_bound, cpu_bound)
    rate = total / elapsed
    print(f"3. {tenants} tenants x 1 server x {letters} letters, 50 ms round trip: {rate:7,.0f} letters/s; "
          f"latency bound {latency_bound:,.0f} ({tenants * per_server} conversations at 1 round trip a letter; "
          f"{two_trips:,.0f} at 2), CPU bound {cpu_bound:,.0f} "
          f"(the raw loop before / after: {before:,.0f} / {after:,.0f}); "
          f"ratio to the lower bound {rate / bound:.2f}; {PROCESSES} dispatch processes "
          f"({cpu / total * 1e6:,.0f} us of their CPU a letter), "
          f"PostgreSQL sessions at most {dispatching} for the dispatch processes, {most} with beat's "
          f"(received {len(sink.ids):,}, unique {len(set(sink.ids)):,}; the chains were all queued "
          f"after {kicked:.1f} s)")  # fmt: skip
    clean()
    return after


def main() -> None:
    os.environ["CELERY_BROKER_URL"] = BROKER
    setup_django()
    import redis

    redis.Redis.from_url(BROKER).flushdb()
    clean()
    only = os.environ.get("BENCH_ONLY", "")
    if only in ("", "limits"):
        limits_under_concurrency()
    if only in ("", "cost"):
        redis.Redis.from_url(BROKER).flushdb()
        cost_per_letter()
    if only in ("", "latency"):
        raw = baseline()
        for tenants, letters in ((20, 100), (200, 20)):
            redis.Redis.from_url(BROKER).flushdb()
            raw = latency(tenants, letters, raw)


if __name__ == "__main__":
    sys.exit(main())
