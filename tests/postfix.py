"""A real Postfix MTA for tests: a private instance in a temporary directory.

Nothing is read from or written to /etc/postfix or /var/spool/postfix: the
instance has its own config, queue and data directories under /tmp (Postfix
runs as `postfix`, who cannot reach pytest's 0700 temp dirs), listens on
127.0.0.1 only, on ports picked at runtime, and nothing can leave the
machine: the only domains it delivers are its own virtual ones, handed over
LMTP to the Dovecot fixture; every other address resolves to the `error`
transport (refused at RCPT, or bounced back to the sender with the switch
below), and master.cf has no `smtp` client to send with at all.

- `smtp_port`: plain SMTP, as a port-25 MX: mail for the local domains only,
  no login, STARTTLS offered.
- `submission_port`: STARTTLS required, then SASL (PLAIN, LOGIN) checked by
  the Dovecot fixture (the bounce mailbox's login and password), PIPELINING
  as Postfix always offers it.
- Local domains: `mta.example.net` with the mailboxes r000@mta.example.net
  ... r999@mta.example.net (`recipients(n)`), and `postroute.test` with the
  Dovecot fixture's USER, bounces@postroute.test, which receives the DSNs
  when it is the envelope sender. Any other address at those domains is
  unknown.

Switches (`configure(...)`, which restarts the master so that no smtpd
with the old settings is left):
- `reject_unlisted=True` (the default, as Postfix ships): an unknown
  recipient is refused at RCPT with `550 5.1.1 ... User unknown in virtual
  mailbox table`; with False it is accepted, Dovecot's LMTP refuses it
  (`550 5.1.1 ... User doesn't exist`) and Postfix bounces it: a real DSN to
  the envelope sender.
- `message_rate_limit=N`: Postfix's own anvil limit, N MAIL FROMs a minute
  per client and per port, then `450 4.7.1 Error: too much mail from
  127.0.0.1` at MAIL FROM (loopback is not exempt here, as it is by
  default). Every configure() starts the count from zero.

Helpers: `recipients(n)`, `settle()` (wait until the queue is empty, DSNs
delivered), `messages(address)` / `maildir_files(address)`, `queue()`,
`log()` (the instance's maillog), `command("postqueue", "-f")`.

Usage: request the session-scoped `postfix` fixture for the server, or the
function-scoped `postfix_mta` for the same server with the queue and every
mailbox emptied and the switches back to their defaults. Both need the
Dovecot fixture with LMTP (dovecot-lmtpd) and root, who alone starts Postfix.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.certs import make_certs
from tests.dovecot import HOST, MTA_DOMAIN, MTA_MAILBOXES, DovecotServer, free_ports
from tests.services import require

DOMAIN = MTA_DOMAIN
HOSTNAME = "mx.postroute.test"
STARTUP_TIMEOUT = 20.0
NOTHING_LEAVES = "error:this test MTA delivers to its own domains only"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGKILL)
DEFAULT_SWITCHES = {
    "reject_unlisted": True,
    "message_rate_limit": 0,
    "rate_time_unit": 60,
    "message_size_limit": 10240000,  # Postfix's default, announced as "SIZE 10240000"
}


def find_binary() -> str | None:
    found = shutil.which("postfix")  # /usr/sbin is not always on PATH
    return found or ("/usr/sbin/postfix" if os.access("/usr/sbin/postfix", os.X_OK) else None)


def postfix_version() -> str:
    return _run(["postconf", "-d", "-h", "mail_version"]).strip()


def recipients(count: int, start: int = 0) -> list[str]:
    """Addresses with a mailbox: r000@mta.example.net, r001@mta.example.net, ..."""
    return list(MTA_MAILBOXES[start : start + count])


def _run(args: list[str], **kwargs: object) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited with {result.returncode}\n{result.stdout}{result.stderr}")
    return result.stdout


@dataclass
class PostfixServer:
    host: str
    smtp_port: int
    submission_port: int
    domain: str
    login: str  # SASL login on the submission port: the bounce mailbox
    password: str
    ca_file: Path
    root: Path
    dovecot: DovecotServer
    switches: dict[str, object] = field(default_factory=lambda: dict(DEFAULT_SWITCHES))

    @property
    def config_dir(self) -> Path:
        return self.root / "etc"

    @property
    def log_file(self) -> Path:
        return self.root / "maillog"

    def command(self, *args: str) -> str:
        """A Postfix administration command on this instance: `command("postqueue", "-f")`."""
        return _run([args[0], "-c", str(self.config_dir), *args[1:]])

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    # Switches

    def configure(
        self,
        *,
        reject_unlisted: bool = True,
        message_rate_limit: int = 0,
        rate_time_unit: int = 60,
        message_size_limit: int = 10240000,
    ) -> None:
        """Set the switches and restart, so that every smtpd (and anvil, with
        its counters) is a new one: after a `postfix reload` old idle smtpd
        processes still take connections with the old settings for a second
        or two, and a busy one until its client leaves."""
        self.command(
            "postconf",
            "-e",
            f"smtpd_reject_unlisted_recipient = {'yes' if reject_unlisted else 'no'}",
            f"smtpd_client_message_rate_limit = {message_rate_limit}",
            f"anvil_rate_time_unit = {rate_time_unit}s",
            f"message_size_limit = {message_size_limit}",
        )
        backdate(self.config_dir / "main.cf")
        self.restart()
        self.switches = {
            "reject_unlisted": reject_unlisted,
            "message_rate_limit": message_rate_limit,
            "rate_time_unit": rate_time_unit,
            "message_size_limit": message_size_limit,
        }

    def restart(self) -> None:
        """Stop (SIGTERM to the master, which stops its children at once) and
        start the master again, without `postfix start`'s checks (seconds
        after a change of main.cf; they ran at the first start)."""
        stop_master(self.master_pid())
        daemons = self.command("postconf", "-h", "daemon_directory").strip()
        # -w: returns once the daemon is up, with its status.
        _run([f"{daemons}/master", "-c", str(self.config_dir), "-w"])
        wait_for_ports([self.smtp_port, self.submission_port])

    def master_pid(self) -> int:
        return int((self.root / "spool" / "pid" / "master.pid").read_text().split()[0])

    def processes(self) -> list[int]:
        """The master and its children."""
        master = self.master_pid()
        return [master, *_children(master)]

    # The queue

    def queue(self) -> list[dict[str, object]]:
        """What Postfix still holds (incoming, active, deferred, hold), one dict per message."""
        return [json.loads(line) for line in self.command("postqueue", "-j").splitlines() if line.strip()]

    def settle(self, timeout: float = 20.0) -> None:
        """Wait until Postfix has delivered or bounced everything it accepted
        (DSNs included: the original leaves the queue only once its DSN is in)."""
        deadline = time.monotonic() + timeout
        flushed = time.monotonic()
        while queued := self.queue():
            if time.monotonic() > deadline:
                raise AssertionError(f"Postfix still holds {queued} after {timeout}s\n{self.log()[-4000:]}")
            if time.monotonic() - flushed > 1.0:
                self.command("postqueue", "-f")  # retry deferred mail now, not at the next queue run
                flushed = time.monotonic()
            time.sleep(0.05)

    # Mailboxes

    def maildir_files(self, address: str) -> list[Path]:
        maildir = self.dovecot.maildir_of(address)
        return sorted(p for sub in ("new", "cur") if (maildir / sub).is_dir() for p in (maildir / sub).iterdir())

    def messages(self, address: str) -> list[EmailMessage]:
        """Every message in `address`'s INBOX, as delivered (Return-Path and Delivered-To on top)."""
        return [
            email.message_from_bytes(path.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for path in self.maildir_files(address)
        ]

    def empty(self) -> None:
        """An empty queue and empty mailboxes, so each test starts from nothing
        (a delivery of the previous test still in flight is let finish first:
        postsuper cannot take back a message being delivered)."""
        with suppress(AssertionError):
            self.settle(timeout=5.0)
        self.command("postsuper", "-d", "ALL")
        self.dovecot.empty()
        self.dovecot.empty_users()


def backdate(path: Path) -> None:
    """Postfix waits until a config file written this very second is a
    second old (it might still be being written): up to 2 s on every read."""
    past = time.time() - 10
    os.utime(path, (past, past))


def wait_for_ports(ports: list[int], timeout: float = STARTUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            try:
                with socket.create_connection((HOST, port), timeout=1) as sock:
                    sock.settimeout(5)
                    if sock.recv(512).startswith(b"220"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Postfix did not greet on port {port} within {timeout}s")
            time.sleep(0.05)


MASTER_CF = """\
# Throwaway test config written by tests/postfix.py. No chroot (the queue is
# not set up as one), and no smtp/relay client: nothing can leave.
{host}:{smtp_port} inet n - n - - smtpd
{host}:{submission_port} inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
pickup    unix  n - n 60   1 pickup
cleanup   unix  n - n -    0 cleanup
qmgr      unix  n - n 300  1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n -    - trivial-rewrite
bounce    unix  - - n -    0 bounce
defer     unix  - - n -    0 bounce
trace     unix  - - n -    0 bounce
verify    unix  - - n -    1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -    - proxymap
showq     unix  n - n -    - showq
error     unix  - - n -    - error
retry     unix  - - n -    - error
discard   unix  - - n -    - discard
lmtp      unix  - - n -    - lmtp
anvil     unix  - - n -    1 anvil
scache    unix  - - n -    1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def write_config(root: Path, dovecot: DovecotServer) -> PostfixServer:
    etc, spool, data = root / "etc", root / "spool", root / "data"
    for directory in (etc, spool, data):
        directory.mkdir(mode=0o755)
    postfix_user = pwd.getpwnam("postfix")
    os.chown(data, postfix_user.pw_uid, postfix_user.pw_gid)  # master.lock, TLS caches
    data.chmod(0o700)
    certs = make_certs(etc / "tls", dns=("localhost",), ips=(HOST,))
    certs.key_file.chmod(0o600)  # smtpd reads it as root, before dropping privileges
    smtp_port, submission_port = free_ports(2)
    assert dovecot.lmtp_socket is not None

    # Which addresses have a mailbox: the ones Dovecot knows (texthash is
    # built in and needs no postmap).
    mailboxes = etc / "virtual_mailboxes"
    mailboxes.write_text("".join(f"{address} OK\n" for address in (dovecot.user, *MTA_MAILBOXES)))

    (etc / "master.cf").write_text(MASTER_CF.format(host=HOST, smtp_port=smtp_port, submission_port=submission_port))
    (etc / "main.cf").write_text(
        f"""\
# Throwaway test config written by tests/postfix.py; includes nothing from /etc/postfix.
compatibility_level = 3.6
queue_directory = {spool}
data_directory = {data}
maillog_file = {root / "maillog"}
maillog_file_prefixes = {root}

# Loopback only, and nothing leaves the machine.
inet_interfaces = {HOST}
inet_protocols = ipv4
myhostname = {HOSTNAME}
mydomain = postroute.test
myorigin = $myhostname
mydestination =
mynetworks = 127.0.0.0/8
relay_domains =
relayhost =
local_recipient_maps =
local_transport = {NOTHING_LEAVES}
alias_maps =
alias_database =
default_transport = {NOTHING_LEAVES}
relay_transport = {NOTHING_LEAVES}
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
notify_classes =
biff = no
smtpd_banner = $myhostname ESMTP

# The domains it does deliver, over LMTP into the Dovecot fixture's Maildirs.
virtual_mailbox_domains = {DOMAIN} postroute.test
virtual_mailbox_maps = texthash:{mailboxes}
virtual_transport = lmtp:unix:{dovecot.lmtp_socket}
# Plus-addressing, as most mail servers do: bounces+tag@postroute.test is
# bounces@postroute.test's (Dovecot's LMTP strips the tag the same way).
recipient_delimiter = +

# TLS with the throwaway CA; SASL by the Dovecot fixture.
smtpd_tls_cert_file = {certs.cert_file}
smtpd_tls_key_file = {certs.key_file}
smtpd_tls_security_level = may
smtpd_sasl_type = dovecot
smtpd_sasl_path = {dovecot.auth_socket}
smtpd_sasl_auth_enable = no

# Tests do not wait: retry deferred mail at once, no inflow throttling.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
in_flow_delay = 0s

# The switches (configure()). Loopback is in $mynetworks, which Postfix
# exempts from its rate limits by default: not here.
smtpd_reject_unlisted_recipient = yes
smtpd_client_message_rate_limit = 0
smtpd_client_event_limit_exceptions =
anvil_rate_time_unit = 60s
message_size_limit = 10240000
"""
    )
    for written in (etc / "main.cf", etc / "master.cf", mailboxes):
        backdate(written)
    return PostfixServer(
        host=HOST,
        smtp_port=smtp_port,
        submission_port=submission_port,
        domain=DOMAIN,
        login=dovecot.user,
        password=dovecot.password,
        ca_file=certs.ca_file,
        root=root,
        dovecot=dovecot,
    )


class PostfixInstance:
    """`postfix -c DIR start` and `stop`, with the master killed by its pid
    file if stopping fails, and the directory removed."""

    def __init__(self, dovecot: DovecotServer) -> None:
        # Traversable by `postfix` (pytest's temp dirs are 0700).
        self.root = Path(tempfile.mkdtemp(prefix="postroute-postfix-"))
        self.root.chmod(0o755)
        self.started_pid: int | None = None
        try:
            self.server = write_config(self.root, dovecot)
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    def start(self) -> PostfixServer:
        try:
            self.server.command("postfix", "start")
            self.started_pid = self._read_pid()
            wait_for_ports([self.server.smtp_port, self.server.submission_port])
        except BaseException as exc:
            self.stop()
            raise RuntimeError(f"Postfix did not start ({postfix_version()}): {exc}\n{self.server.log()}") from exc
        return self.server

    def _read_pid(self) -> int | None:
        pid_file = self.root / "spool" / "pid" / "master.pid"
        try:
            return int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        try:
            self._stop_master()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _stop_master(self) -> None:
        pid = self._read_pid() or self.started_pid
        if pid is None or not _alive(pid):
            return
        processes = [pid, *_children(pid)]
        with suppress(RuntimeError, subprocess.TimeoutExpired):
            self.server.command("postfix", "stop")  # waits for the master to go
        if any(_alive(p) for p in processes):
            stop_master(pid, processes, signals=(signal.SIGKILL,))


def stop_master(
    master: int, processes: list[int] | None = None, *, signals: tuple[signal.Signals, ...] = STOP_SIGNALS
) -> None:
    """Stop a master and its children: SIGTERM (the master stops its children
    at once), then SIGKILL to its process group (it leads one) and to each."""
    processes = processes or [master, *_children(master)]
    for sig in signals:
        targets = [master] if sig == signal.SIGTERM else processes
        for pid in targets:
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        if sig == signal.SIGKILL:
            with suppress(ProcessLookupError):
                os.killpg(master, sig)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in processes) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not any(_alive(pid) for pid in processes):
            return
    raise RuntimeError(f"Postfix processes {[pid for pid in processes if _alive(pid)]} outlived SIGKILL")


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _alive(pid: int) -> bool:
    """Running, and not a zombie waiting for init to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture(scope="session")
def postfix(dovecot: DovecotServer) -> Iterator[PostfixServer]:
    require("Postfix", find_binary() is not None, "apt-get install postfix")
    require("root (Postfix starts as root and drops to the postfix user)", os.geteuid() == 0, "run the tests as root")
    require("Dovecot LMTP", dovecot.lmtp_socket is not None, "apt-get install dovecot-lmtpd")
    instance = PostfixInstance(dovecot)
    try:
        yield instance.start()
    finally:
        instance.stop()


@pytest.fixture
def postfix_mta(postfix: PostfixServer) -> PostfixServer:
    """The session's Postfix with an empty queue, empty mailboxes and the default switches."""
    postfix.empty()
    if postfix.switches != DEFAULT_SWITCHES:
        postfix.configure(**DEFAULT_SWITCHES)  # type: ignore[arg-type]
    return postfix
