"""A real Dovecot IMAP/POP3 server for tests, started from a throwaway config.

Nothing is read from /etc/dovecot: the config, TLS certificates, user file,
sockets and logs live in one pytest temporary directory, the Maildirs and the
sockets an MTA uses in one more under /tmp (removed when the server stops),
and every listener is on 127.0.0.1 on a port picked at runtime, so a system
Dovecot (if the Debian package started one) never interferes.

Usage: request the session-scoped `dovecot` fixture for the server, or the
function-scoped `dovecot_mailbox` for the same server with an emptied Maildir.

For a local MTA (tests/postfix.py) the server also exposes, in that second
directory (other users can traverse it: pytest's temp dirs are 0700, Postfix
runs as `postfix` and LMTP delivers as the mail owner without a chroot), an
auth socket for SASL and, when dovecot-lmtpd is installed, an LMTP socket
that delivers to USER (into `maildir`) and to MTA_MAILBOXES,
r000@mta.example.net ... r999@mta.example.net (into `maildir_of(address)`).
"""

from __future__ import annotations

import grp
import imaplib
import itertools
import os
import poplib
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.certs import make_certs
from tests.services import require

USER = "bounces@postroute.test"
PASSWORD = "imap-test-password"
# A mailbox whose login and password are not ASCII (RFC 6855's world): the
# clients must log in without encoding either in ASCII.
UTF8_USER = "почта@пример.рф"
UTF8_PASSWORD = "пароль-ящика"
# A login as HCL Domino's IMAP takes one, the person's name: ASCII that is
# no IMAP atom (it has a space), so it must go quoted.
NAMED_USER = "Ivan Ivanov/Sales"
NAMED_PASSWORD = "domino-password"
LOGINS = {USER: PASSWORD, UTF8_USER: UTF8_PASSWORD, NAMED_USER: NAMED_PASSWORD}
# The other mailboxes LMTP delivers to (an MTA's local recipients); any
# other address is refused with 550 5.1.1. Not a .test name: the product's
# address validation refuses special-use domains, so no contact could have it.
MTA_DOMAIN = "mta.example.net"
MTA_MAILBOXES = tuple(f"r{i:03d}@{MTA_DOMAIN}" for i in range(1000))
HOST = "127.0.0.1"
STARTUP_TIMEOUT = 10.0

# Maildir file names must be unique per delivery, even within one microsecond.
_delivery_counter = itertools.count()


LMTP_BINARY = Path("/usr/lib/dovecot/lmtp")  # Debian's dovecot-lmtpd


def find_binary() -> str | None:
    found = shutil.which("dovecot")
    if found:
        return found
    return "/usr/sbin/dovecot" if os.access("/usr/sbin/dovecot", os.X_OK) else None


def dovecot_version(binary: str) -> str:
    """E.g. "2.3.19.1 (9b53102964)"; the config below is written for 2.3."""
    return subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout.strip()


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out for port 0; all held open at once so they differ."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass(frozen=True)
class MailOwner:
    """Who the IMAP/POP3 processes run as, and so who must own the Maildir."""

    uid: int
    gid: int
    chroot: bool  # as root, mail processes chroot into the mail directory

    @classmethod
    def for_current_process(cls) -> MailOwner:
        if os.geteuid() != 0:
            return cls(os.getuid(), os.getgid(), chroot=False)
        # Dovecot refuses to open mail as root ("userdb returned 0 as uid",
        # "Mail access not allowed for root"), so as root it runs as nobody.
        nobody = pwd.getpwnam("nobody")
        return cls(nobody.pw_uid, nobody.pw_gid, chroot=True)

    def own(self, path: Path) -> None:
        if os.geteuid() == 0:
            os.chown(path, self.uid, self.gid)


@dataclass
class DovecotServer:
    host: str
    imap_port: int
    imaps_port: int
    pop3_port: int
    pop3s_port: int
    user: str
    password: str
    maildir: Path
    ca_file: Path
    log_file: Path
    owner: MailOwner
    # For an MTA: sockets in a directory any local user can reach.
    auth_socket: Path
    lmtp_socket: Path | None  # None without dovecot-lmtpd
    users_root: Path  # other addresses' homes, one directory each

    def ssl_context(self) -> ssl.SSLContext:
        """Verifies the server against the fixture's CA; use server_hostname "localhost"."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def folder_path(self, folder: str = "INBOX") -> Path:
        # Maildir++ layout: INBOX is the root, other folders are ".Name" (and ".A.B" for A/B).
        if folder.upper() == "INBOX":
            return self.maildir
        return self.maildir / ("." + folder.replace("/", "."))

    def ensure_folder(self, folder: str = "INBOX") -> Path:
        path = self.folder_path(folder)
        for sub in ("", "cur", "new", "tmp"):
            (path / sub).mkdir(mode=0o700, exist_ok=True)
            self.owner.own(path / sub)
        if path != self.maildir:
            marker = path / "maildirfolder"  # Maildir++ marks subfolders with this file
            marker.touch()
            self.owner.own(marker)
        return path

    def deliver(self, raw_message: bytes, folder: str = "INBOX", seen: bool = False) -> Path:
        """Drop a message into the Maildir the way an MDA would: write to tmp/, rename into place.

        Unseen mail goes to new/ (Dovecot moves it to cur/ when it sees it);
        seen mail goes straight to cur/ with the ":2,S" info suffix.
        """
        path = self.ensure_folder(folder)
        now = time.time()
        hostname = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
        base = f"{int(now)}.M{int(now % 1 * 1_000_000)}P{os.getpid()}Q{next(_delivery_counter)}.{hostname}"
        name = f"{base},S={len(raw_message)}"
        tmp = path / "tmp" / name
        tmp.write_bytes(raw_message)
        self.owner.own(tmp)
        final = path / "cur" / f"{name}:2,S" if seen else path / "new" / name
        tmp.rename(final)
        return final

    def empty(self) -> None:
        """Remove every folder, message and Dovecot index, leaving an empty INBOX."""
        shutil.rmtree(self.maildir, ignore_errors=True)
        self.ensure_folder("INBOX")

    def maildir_of(self, address: str) -> Path:
        """Where LMTP delivers mail for `address` (USER's is `maildir`)."""
        if address.lower() == self.user:
            return self.maildir
        return self.users_root / address.lower() / "Maildir"

    def empty_users(self) -> None:
        """Remove every other address's mail that LMTP delivered."""
        for home in self.users_root.iterdir():
            shutil.rmtree(home, ignore_errors=True)

    def imap_client(self, ssl: bool = False) -> imaplib.IMAP4:
        """A logged-in client over plain IMAP, or IMAPS when ssl=True; caller logs out."""
        client: imaplib.IMAP4
        if ssl:
            client = imaplib.IMAP4_SSL("localhost", self.imaps_port, ssl_context=self.ssl_context(), timeout=10)
        else:
            client = imaplib.IMAP4(self.host, self.imap_port, timeout=10)
        client.login(self.user, self.password)
        return client

    def pop3_client(self, ssl: bool = False) -> poplib.POP3:
        """A logged-in client over plain POP3, or POP3S when ssl=True; caller quits."""
        client: poplib.POP3
        if ssl:
            client = poplib.POP3_SSL("localhost", self.pop3s_port, context=self.ssl_context(), timeout=10)
        else:
            client = poplib.POP3(self.host, self.pop3_port, timeout=10)
        client.user(self.user)
        client.pass_(self.password)
        return client


def write_config(directory: Path, shared: Path) -> tuple[Path, DovecotServer]:
    """Write a self-contained dovecot.conf (Dovecot 2.3 syntax) under `directory`.
    The mail and the sockets an MTA uses go into `shared`, which other users
    (the mail owner, Postfix) can traverse."""
    directory.mkdir(parents=True, exist_ok=True)
    certs = make_certs(directory / "tls", dns=("localhost",), ips=(HOST,))
    imap_port, imaps_port, pop3_port, pop3s_port = free_ports(4)
    owner = MailOwner.for_current_process()

    users = directory / "users"
    users.write_text(
        # Dovecot looks a login up in lower case (auth_username_format %Lu).
        "".join(f"{user.lower()}:{{PLAIN}}{password}\n" for user, password in LOGINS.items()),
        encoding="utf-8",
    )
    users.chmod(0o600)

    mail_root = shared / "mail"
    mail_root.mkdir(exist_ok=True)
    owner.own(mail_root)
    users_root = mail_root / "users"
    users_root.mkdir(exist_ok=True)
    owner.own(users_root)

    if owner.chroot:
        # Root: auth reads the 0600 user file in pytest's 0700 temp dir, so it
        # stays root; login processes drop to dovenull inside their chroot.
        # IMAP and POP3 chroot into mail_root ("/./" in home) before dropping
        # to nobody; LMTP ignores the chroot and reaches the mail root as
        # nobody through the 0711 shared directory.
        internal_user, internal_group, login_user = "root", "root", "dovenull"
        home, chroot_settings, no_chroot, other_services = f"{mail_root}/./", f"valid_chroot_dirs = {mail_root}", "", ""
        users_home = f"{mail_root}/./users"
    else:
        # Unprivileged: everything runs as us, and chroot is impossible, so
        # every service Dovecot chroots by default must be told not to.
        internal_user = login_user = pwd.getpwuid(os.getuid()).pw_name
        internal_group = grp.getgrgid(os.getgid()).gr_name
        home, chroot_settings, no_chroot = str(mail_root), "", "  chroot =\n"
        users_home = str(users_root)
        other_services = "".join(
            f"service {name} {{\n{no_chroot}}}\n"
            for name in ("aggregator", "director", "imap-urlauth-login", "ipc", "old-stats", "submission-login")
        )

    # USER's home is the mail root, as it always was; the MTA's mailboxes
    # (mail handed over LMTP) get homes of their own under users/.
    userdb = directory / "userdb"
    userdb.write_text(
        "".join(
            f"{name}::{owner.uid}:{owner.gid}::{path}::\n"
            for name, path in [
                (USER, home),
                (UTF8_USER, f"{users_home}/utf8"),
                (NAMED_USER.lower(), f"{users_home}/named"),
                *((m, f"{users_home}/{m}") for m in MTA_MAILBOXES),
            ]
        ),
        encoding="utf-8",
    )
    userdb.chmod(0o600)
    auth_socket = shared / "auth"
    lmtp_socket = shared / "lmtp" if LMTP_BINARY.exists() else None
    protocols, lmtp_service = "imap pop3", ""
    if lmtp_socket is not None:
        protocols += " lmtp"
        lmtp_service = f"""\
service lmtp {{
  unix_listener {lmtp_socket} {{
    mode = 0666
  }}
}}
"""

    log_file = directory / "dovecot.log"
    conf = directory / "dovecot.conf"
    conf.write_text(
        f"""\
# Throwaway test config written by tests/dovecot.py; includes nothing from /etc/dovecot.
base_dir = {directory / "run"}
state_dir = {directory / "state"}
instance_name = postroute-test-{os.getpid()}
log_path = {log_file}
protocols = {protocols}
listen = {HOST}

default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = {owner.uid}
first_valid_gid = {owner.gid}

ssl = yes
ssl_cert = <{certs.cert_file}
ssl_key = <{certs.key_file}

auth_mechanisms = plain login
# Empty: any character in a login, as a server for почта@пример.рф allows
# (the default list is ASCII letters, digits and .-_@).
auth_username_chars =
# Plain-text logins on loopback, so tests can also speak unencrypted IMAP/POP3.
disable_plaintext_auth = no
# Tests try wrong passwords on purpose; don't make them wait.
auth_failure_delay = 0

passdb {{
  driver = passwd-file
  args = scheme=PLAIN {users}
}}
userdb {{
  driver = passwd-file
  args = {userdb}
}}
{chroot_settings}
mail_location = maildir:~/Maildir
mail_max_userip_connections = 100

service imap-login {{
{no_chroot}  inet_listener imap {{
    address = {HOST}
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = {HOST}
    port = {imaps_port}
    ssl = yes
  }}
}}
service pop3-login {{
{no_chroot}  inet_listener pop3 {{
    address = {HOST}
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    address = {HOST}
    port = {pop3s_port}
    ssl = yes
  }}
}}
# SASL for an MTA's submission service (Postfix's smtpd runs as `postfix`).
service auth {{
  unix_listener {auth_socket} {{
    mode = 0666
  }}
}}
{lmtp_service}# Runs as root by default; unprivileged it must be us.
service auth-worker {{
  user = $default_internal_user
}}
# No growing per-IP penalty after failed logins (Dovecot's documented switch).
service anvil {{
{no_chroot}  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{other_services}"""
    )
    server = DovecotServer(
        host=HOST,
        imap_port=imap_port,
        imaps_port=imaps_port,
        pop3_port=pop3_port,
        pop3s_port=pop3s_port,
        user=USER,
        password=PASSWORD,
        maildir=mail_root / "Maildir",
        ca_file=certs.ca_file,
        log_file=log_file,
        owner=owner,
        auth_socket=auth_socket,
        lmtp_socket=lmtp_socket,
        users_root=users_root,
    )
    server.ensure_folder("INBOX")
    return conf, server


class DovecotProcess:
    """`dovecot -F` in the foreground, in its own process group so it can be reaped whole."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        # Reachable by other users (pytest's temp dirs are 0700), listable by none.
        self.shared = Path(tempfile.mkdtemp(prefix="postroute-dovecot-"))
        self.shared.chmod(0o711)
        try:
            self.conf, self.server = write_config(directory, self.shared)
        except BaseException:
            shutil.rmtree(self.shared, ignore_errors=True)
            raise
        self.output = directory / "dovecot.out"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> DovecotServer:
        with self.output.open("wb") as output:
            self.process = subprocess.Popen(
                [self.binary, "-F", "-c", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_until_listening()
        except BaseException:
            self.stop()
            raise
        return self.server

    def _wait_until_listening(self) -> None:
        assert self.process is not None
        ports = [self.server.imap_port, self.server.imaps_port, self.server.pop3_port, self.server.pop3s_port]
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while ports:
            if self.process.poll() is not None:
                raise RuntimeError(f"Dovecot exited with status {self.process.returncode}\n{self.diagnostics()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Dovecot did not listen on {ports} within {STARTUP_TIMEOUT}s\n{self.diagnostics()}")
            try:
                with socket.create_connection((HOST, ports[0]), timeout=0.5):
                    ports.pop(0)
            except OSError:
                time.sleep(0.02)

    def diagnostics(self) -> str:
        parts = [f"{dovecot_version(self.binary)}, config: {self.conf}"]
        for path in (self.output, self.server.log_file):
            text = path.read_text(errors="replace").strip() if path.exists() else ""
            parts.append(f"--- {path.name} ---\n{text or '(empty)'}")
        return "\n".join(parts)

    def stop(self) -> None:
        try:
            self._stop_process()
        finally:
            shutil.rmtree(self.shared, ignore_errors=True)

    def _stop_process(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # the master stops its children on SIGTERM
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    binary = find_binary()
    require("Dovecot IMAP/POP3 server", binary is not None, "apt-get install dovecot-imapd dovecot-pop3d")
    assert binary is not None
    process = DovecotProcess(binary, tmp_path_factory.mktemp("dovecot"))
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture
def dovecot_mailbox(dovecot: DovecotServer) -> DovecotServer:
    """The session's server with an empty Maildir, so each test starts from nothing."""
    dovecot.empty()
    return dovecot
