"""Dispatch throughput: 10,000 letters of ~1 KB to a local SMTP sink running
in its own process, through the real pipeline (PostgreSQL, Redis, real
Celery worker processes, limit accounting, status updates), against a raw
smtplib loop with one reused connection to the same sink, in the same run.

Prints both rates (letters/s), the ratio, the same with the results not
waiting for the disk (DISPATCH_DURABLE_RESULTS=0), the same with a sink
that offers PIPELINING (the raw loop does not pipeline), the rate with 4 worker
processes and 4 servers, and checks every letter arrived exactly once. Then limits
under concurrency: 4 workers, 3 servers limited to 100, 150 and 50 letters
an hour, a 1,000-letter mailing: letters per server (must be exactly 100,
150, 50), the overshoot (must be 0) and the mailing's state."""

import multiprocessing
import os
import smtplib
import subprocess
import sys
import time
from email.message import EmailMessage

from common import ROOT, setup_django

N = int(os.environ.get("BENCH_LETTERS", "10000"))
BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/14")
BODY = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 16)[:900]


def sink_process(port: int, ready, stop, results, pipelining: bool = False) -> None:
    from aiosmtpd.controller import Controller

    ids: list[str] = []

    class Handler:
        async def handle_EHLO(self, server, session, envelope, hostname, responses):
            session.host_name = hostname
            return [*responses[:-1], "250-PIPELINING", responses[-1]] if pipelining else responses

        async def handle_DATA(self, server, session, envelope):
            for line in envelope.original_content.split(b"\r\n", 30):
                if line.lower().startswith(b"message-id:"):
                    ids.append(line.split(b":", 1)[1].strip().decode())
                    break
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()
    results.put(ids)


class Sink:
    def __init__(self, port: int, *, pipelining: bool = False) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.ready, self.stop, self.results = ctx.Event(), ctx.Event(), ctx.Queue()
        args = (port, self.ready, self.stop, self.results, pipelining)
        self.process = ctx.Process(target=sink_process, args=args)
        self.process.start()
        self.ready.wait(10)

    def finish(self) -> list[str]:
        self.stop.set()
        ids = self.results.get(timeout=60)
        self.process.join(10)
        return ids


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw_loop(port: int) -> float:
    client = smtplib.SMTP("127.0.0.1", port)
    started = time.perf_counter()
    for i in range(N):
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "a@example.com", f"r{i}@example.com", f"Hello {i}"
        message["Message-ID"] = f"<raw-{i}@example.com>"
        message.set_content(BODY)
        client.send_message(message)
    client.quit()
    return N / (time.perf_counter() - started)


def seed(ports: list[int], limits: list[int | None] | None = None, count: int | None = None):
    from django.db import connection

    from accounts.models import Tenant
    from mailing import mailings
    from mailing.models import Contact, ContactList, Mailing, MailTemplate
    from servers.models import Security, SmtpServer

    Mailing.objects.filter(tenant__slug="bench-dispatch").delete()
    Tenant.objects.filter(slug="bench-dispatch").delete()
    tenant = Tenant.objects.create(name="Bench dispatch", slug="bench-dispatch")
    contact_list = ContactList.objects.create(tenant=tenant, name="All")
    Contact.objects.bulk_create(Contact(tenant=tenant, email=f"r{i}@example.com", first_name=f"R{i}") for i in range(N))
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO mailing_contact_lists (contact_id, contactlist_id) SELECT id, %s FROM mailing_contact "
            "WHERE tenant_id = %s",
            [contact_list.pk, tenant.pk],
        )
    servers = [
        SmtpServer.objects.create(
            tenant=tenant,
            name=f"sink{i}",
            sender_email="news@example.com",
            host="127.0.0.1",
            port=port,
            security=Security.NONE,
            priority=i,
            max_connections=1,
            max_per_hour=(limits or [None] * len(ports))[i],
        )
        for i, port in enumerate(ports)
    ]
    template = MailTemplate.objects.create(
        tenant=tenant, name="t", subject="Hello {{ first_name }}", text_body=BODY + "\n{{ unsubscribe_url }}"
    )
    mailing = Mailing(tenant=tenant, name="bench", template=template)
    mailings.mailing_save(mailing=mailing, lists=[contact_list], servers=servers)
    return tenant, mailing


def workers(count: int) -> list[subprocess.Popen]:
    # Workers run as production does (DEBUG off), self-hosted so that they
    # may send to the sink on this machine.
    env = {**os.environ, "CELERY_BROKER_URL": BROKER, "DEBUG": "0", "DEPLOYMENT_MODE": "self_hosted",
           "SERVERS_ALLOW_PRIVATE_HOSTS": "1"}  # fmt: skip
    cmd = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "dispatch,default", "-P", "solo",
           "-c", "1", "-l", "warning", "--without-gossip", "--without-mingle", "--without-heartbeat",
           "-n", "bench{}@%h"]  # fmt: skip
    procs = [subprocess.Popen([*cmd[:-1], cmd[-1].format(i)], cwd=ROOT, env=env) for i in range(count)]  # noqa: S603
    time.sleep(4)  # let them connect to the broker
    return procs


def run_pipeline(worker_count: int, server_count: int, *, pipelining: bool = False) -> tuple[float, list[str], int]:
    from mailing import mailings, tasks
    from mailing.models import Letter

    ports = [free_port() for _ in range(server_count)]
    sinks = [Sink(p, pipelining=pipelining) for p in ports]
    tenant, mailing = seed(ports)
    procs = workers(worker_count)
    try:
        started = time.perf_counter()
        mailings.mailing_start(mailing=mailing)  # queues the first batch
        for _ in range(worker_count - 1):
            tasks.send_mailing.delay(mailing.pk)  # more chains for more workers
        letters = Letter.objects.filter(mailing=mailing)
        while letters.filter(status=Letter.Status.SENT).count() < N:
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
    ids = [i for sink in sinks for i in sink.finish()]
    sent = letters.filter(status=Letter.Status.SENT).count()
    mailing.delete()
    tenant.delete()
    return N / elapsed, ids, sent


def limits_under_concurrency() -> None:
    """4 workers, 3 servers limited to 100, 150 and 50 an hour, 1,000 letters:
    exactly 300 go out, split 100/150/50, and the mailing waits."""
    from mailing import mailings, tasks
    from mailing.models import Letter, Mailing

    limits = [100, 150, 50]
    ports = [free_port() for _ in limits]
    sinks = [Sink(p) for p in ports]
    tenant, mailing = seed(ports, limits, count=1000)
    procs = workers(4)
    try:
        mailings.mailing_start(mailing=mailing)
        for _ in range(3):
            tasks.send_mailing.delay(mailing.pk)
        deadline = time.monotonic() + 120
        while Mailing.objects.get(pk=mailing.pk).status != Mailing.Status.WAITING and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
    per_server = [len(sink.finish()) for sink in sinks]
    mailing.refresh_from_db()
    overshoot = sum(max(0, got - limit) for got, limit in zip(per_server, limits, strict=True))
    sent = Letter.objects.filter(mailing=mailing, status=Letter.Status.SENT).count()
    until = f" until {mailing.resume_at:%H:%M:%S}" if mailing.resume_at else ""
    state = mailing.get_status_display().lower() + until
    print(f"limits 100/150/50, 4 workers:      letters per server {per_server}, overshoot {overshoot}, "
          f"recorded sent {sent}, mailing {state}")  # fmt: skip
    mailing.delete()
    tenant.delete()


def main() -> None:
    os.environ["CELERY_BROKER_URL"] = BROKER
    setup_django()
    import redis

    redis.Redis.from_url(BROKER).flushdb()
    limits_under_concurrency()
    if os.environ.get("BENCH_ONLY_LIMITS"):
        return
    redis.Redis.from_url(BROKER).flushdb()
    port = free_port()
    sink = Sink(port)
    raw = raw_loop(port)
    sink.finish()
    print(f"raw smtplib loop, one connection:    {raw:8,.0f} letters/s")
    rate, ids, sent = run_pipeline(1, 1)
    print(f"Postroute, 1 worker, 1 server:       {rate:8,.0f} letters/s   ratio {rate / raw:.2f}  "
          f"(received {len(ids):,}, unique {len(set(ids)):,}, recorded sent {sent:,})")  # fmt: skip
    os.environ["DISPATCH_DURABLE_RESULTS"] = "0"
    rate_d, ids_d, sent_d = run_pipeline(1, 1)
    del os.environ["DISPATCH_DURABLE_RESULTS"]
    print(f"  the same, not waiting for the disk:{rate_d:8,.0f} letters/s   ratio {rate_d / raw:.2f}  "
          f"(DISPATCH_DURABLE_RESULTS=0; received {len(ids_d):,}, unique {len(set(ids_d)):,}, "
          f"recorded sent {sent_d:,})")  # fmt: skip
    rate_p, ids_p, sent_p = run_pipeline(1, 1, pipelining=True)
    print(f"  the same, the sink offers PIPELINING:{rate_p:6,.0f} letters/s   ratio {rate_p / raw:.2f}  "
          f"(MAIL, RCPT, DATA in one write; received {len(ids_p):,}, unique {len(set(ids_p)):,}, "
          f"recorded sent {sent_p:,})")  # fmt: skip
    rate4, ids4, sent4 = run_pipeline(4, 4)
    print(f"Postroute, 4 workers, 4 servers:     {rate4:8,.0f} letters/s   ratio {rate4 / raw:.2f}  "
          f"(received {len(ids4):,}, unique {len(set(ids4)):,}, recorded sent {sent4:,})")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
