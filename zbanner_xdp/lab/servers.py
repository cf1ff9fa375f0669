"""The target's real servers: configs, keys, start-up, and proof that each one answers.

Debian's own binaries run in the foreground inside the target namespace,
listening on 0.0.0.0 and ::, so every local (AnyIP) address answers, IPv4 and
IPv6 alike. Configs are
rendered from the templates in files/ into STATE_DIR; readiness is asked
from the scanner's side, so it proves the veths, the router and the server.
"""

from __future__ import annotations

import concurrent.futures
import glob
import hashlib
import os
import pwd
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from importlib import resources

from . import netns, procs
from .procs import CMD_TIMEOUT, log_path, log_tail, ns_exec_argv
from .topology import (
    BIG_NET,
    BIG_NET6,
    BIG_PAGE,
    DNS_ANSWER,
    DNS_ANSWER6,
    DNS_NAME,
    NFT_TABLE,
    NOECHO_NET,
    NOECHO_NET6,
    NTP_STRATUM,
    OPEN_TCP_PORTS,
    PORT_PROTOS,
    PORTS,
    PROHIBIT_NET,
    PROHIBIT_NET6,
    READY_ADDR,
    READY_ADDR6,
    RST_NET,
    RST_NET6,
    SCAN_NS,
    SILENT_NET,
    SILENT_NET6,
    STATE_DIR,
    TARGET_IP,
    TARGET_IP6,
    TARGET_NS,
    TARPIT_IP,
    TARPIT_IP6,
    TARPIT_PORT,
    TTL_NET,
    TTL_NET6,
    UNEXPECTED,
    UNREACH_NET,
    UNREACH_NET6,
)

# server name -> the PORTS keys it serves
SERVERS: dict[str, tuple[str, ...]] = {
    "nginx": ("http", "https"),
    "sshd": ("ssh",),
    "vsftpd": ("ftp",),
    "redis": ("redis",),
    "dnsmasq": ("dns",),
    "chronyd": ("ntp",),
    "postgres": ("postgres",),
    "mariadb": ("mysql",),
    "memcached": ("memcached",),
    "mosquitto": ("mqtt",),
    "exim": ("smtp",),
    "dovecot": ("pop3", "imap"),
}
# Pids read back from STATE_DIR are only trusted (and signalled) when the
# process really is that server: a stale pid file may name a reused pid.
_SERVER_EXE: dict[str, str] = {
    "nginx": "nginx",
    "sshd": "sshd",
    "vsftpd": "vsftpd",
    "redis": "redis-server",
    "dnsmasq": "dnsmasq",
    "chronyd": "chronyd",
    "postgres": "postgres",
    "mariadb": "mariadbd",
    "memcached": "memcached",
    "mosquitto": "mosquitto",
    "exim": "exim4",
    "dovecot": "dovecot",
}

READY_TIMEOUT = 10.0


def server_pid(name: str) -> int | None:
    """The tracked pid of server `name` if that process is alive and really is the server."""
    pid = procs.read_pidfile(name)
    if pid is None or not procs.alive(pid):
        return None
    # Debian's redis-server is a symlink to redis-check-rdb (exe shows the
    # target, comm the name it was started as), so accept either.
    if _SERVER_EXE[name] not in (procs.exe_name(pid), procs.comm(pid)):
        return None
    return pid


def _render(template: str, dest: str, mode: int = 0o644) -> None:
    text = resources.files(__package__).joinpath("files", template).read_text()
    values = {
        "STATE_DIR": STATE_DIR,
        "TABLE": NFT_TABLE,
        "RST_NET": RST_NET,
        "SILENT_NET": SILENT_NET,
        "NOECHO_NET": NOECHO_NET,
        "TARPIT_IP": TARPIT_IP,
        "TARPIT_PORT": str(TARPIT_PORT),
        "OPEN_TCP_PORTS": ", ".join(str(p) for p in sorted(OPEN_TCP_PORTS)),
        "BIG_NET": BIG_NET,
        "TARGET_IP": TARGET_IP,
        # Ports whose connections are DNATed (conntrack on), the ports they reach (replies looked up).
        "NAT_PORTS": ", ".join(str(p) for p in sorted({PORTS["dns"], *UNEXPECTED})),
        "NAT_TARGET_PORTS": ", ".join(str(p) for p in sorted({PORTS[k] for k in UNEXPECTED.values()})),
        "UNEXPECTED_MAP": ", ".join(f"{p} : {TARGET_IP} . {PORTS[k]}" for p, k in sorted(UNEXPECTED.items())),
        "UNEXPECTED_MAP6": ", ".join(
            f"{p} : {TARGET_IP6} . {PORTS[k]}" for p, k in sorted(UNEXPECTED.items())
        ),
        "SILENT_NET6": SILENT_NET6,
        "RST_NET6": RST_NET6,
        "NOECHO_NET6": NOECHO_NET6,
        "TARPIT_IP6": TARPIT_IP6,
        "BIG_NET6": BIG_NET6,
        "TARGET_IP6": TARGET_IP6,
        "TTL_NET6": TTL_NET6,
        "UNREACH_NET6": UNREACH_NET6,
        "PROHIBIT_NET6": PROHIBIT_NET6,
        "DNS_ANSWER6": DNS_ANSWER6,
        "TTL_NET": TTL_NET,
        "UNREACH_NET": UNREACH_NET,
        "PROHIBIT_NET": PROHIBIT_NET,
        "DNS_NAME": DNS_NAME,
        "DNS_ANSWER": DNS_ANSWER,
        "DNS_PORT": str(PORTS["dns"]),
        "NTP_PORT": str(PORTS["ntp"]),
        "NTP_STRATUM": str(NTP_STRATUM),
        "MQTT_PORT": str(PORTS["mqtt"]),
        "SMTP_PORT": str(PORTS["smtp"]),
        "POP3_PORT": str(PORTS["pop3"]),
        "IMAP_PORT": str(PORTS["imap"]),
    }
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    leftover = re.findall(r"@[A-Z_]+@", text)
    if leftover:
        raise RuntimeError(f"lab: template {template} has unknown placeholders {leftover}")
    with open(dest, "w") as f:
        f.write(text)
    os.chmod(dest, mode)


# --------------------------------------------------------------------------- UDP probes (readiness)


def _dns_query(name: str, qid: int = 0x7A62) -> bytes:
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)  # RD, one question
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack(">HH", 1, 1)  # A, IN


def _dns_answer(reply: bytes, qid: int = 0x7A62) -> str | None:
    """The first A record of a reply to _dns_query (whose question is echoed, so the answer is last)."""
    if len(reply) < 16 or struct.unpack(">H", reply[:2])[0] != qid or reply[3] & 0x0F:
        return None
    ancount = struct.unpack(">H", reply[6:8])[0]
    if ancount < 1 or reply[-6:-4] != b"\x00\x04":  # RDLENGTH 4 right before the address
        return None
    return socket.inet_ntoa(reply[-4:])


NTP_REQUEST = bytes([0x23]) + bytes(47)  # LI 0, version 4, mode 3 (client)


def udp_exchange(addr: str, port: int, payload: bytes, timeout: float) -> bytes | None:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((addr, port))
            s.send(payload)
            return s.recv(2048)
        except OSError:
            return None


def _dns_ok(addr: str, timeout: float = 0.3) -> bool:
    reply = udp_exchange(addr, PORTS["dns"], _dns_query(DNS_NAME), timeout)
    return reply is not None and _dns_answer(reply) == DNS_ANSWER


def _ntp_ok(addr: str, timeout: float = 0.3) -> bool:
    reply = udp_exchange(addr, PORTS["ntp"], NTP_REQUEST, timeout)
    return reply is not None and len(reply) >= 48 and reply[0] & 7 == 4 and reply[1] == NTP_STRATUM


def prepare_state_dir() -> list[subprocess.Popen[bytes]]:
    """Lay out STATE_DIR and start key generation (in parallel with the network build)."""
    for sub in ("", "run", "www", "tls", "nginx-tmp"):
        os.makedirs(os.path.join(STATE_DIR, sub), mode=0o755, exist_ok=True)
    os.chmod(STATE_DIR, 0o755)  # nginx workers run as www-data and read www/
    # sshd refuses to start without its privilege separation dir; vsftpd
    # without its secure_chroot_dir. Both are the packages' standard paths.
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    os.makedirs("/var/run/vsftpd/empty", mode=0o755, exist_ok=True)
    # exim's spool (and its logs) belong to its user.
    spool = os.path.join(STATE_DIR, "exim")
    os.makedirs(spool, mode=0o750, exist_ok=True)
    ent = _user("Debian-exim")
    os.chown(spool, ent.pw_uid, ent.pw_gid)
    tls = os.path.join(STATE_DIR, "tls")
    argvs = [
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-subj", "/CN=zbanner-lab", "-days", "30",
            "-keyout", os.path.join(tls, "lab.key"), "-out", os.path.join(tls, "lab.crt"),
        ],
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{STATE_DIR}/ssh_host_ed25519_key"],
    ]  # fmt: skip
    started = []
    for argv in argvs:
        try:
            started.append(
                subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
                )
            )
        except FileNotFoundError as e:
            raise RuntimeError(f"lab: {argv[0]} not found (is it installed?)") from e
    return started


# --------------------------------------------------------------------------- databases' data directories
#
# PostgreSQL and MariaDB need an initialised data directory (~1 s each to make). One is made per
# server version and kept under CACHE_DIR (root-owned); each `lab up` copies it into DATA_DIR (tmpfs,
# ~0.1 s, in parallel with the network build), so the lab's servers never share files with another lab's.

CACHE_DIR = "/var/cache/zbanner-xdp"
DATADIRS = ("postgres", "mariadb")
# MariaDB's InnoDB files kept small (the defaults make ~100 MB): the same at initialisation and start.
_INNODB = [
    "--innodb-log-file-size=4M", "--innodb-data-file-path=ibdata1:4M:autoextend",
    "--innodb-autoextend-increment=1", "--innodb-undo-tablespaces=0", "--innodb-buffer-pool-size=16M",
]  # fmt: skip


def _user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError as e:
        raise RuntimeError(f"lab: user {name!r} missing (is its server installed? scripts/setup.sh)") from e


def _as_user(user: str, argv: list[str]) -> list[str]:
    """argv run as `user`: setpriv execs in place (the pid stays the server's)."""
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *argv]


def _postgres_bin(tool: str) -> str:
    def version(path: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"[0-9]+", path.split("/")[-3]))

    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"), key=version)
    if not found:
        raise RuntimeError(f"lab: PostgreSQL's {tool} not found (is postgresql installed?)")
    return found[-1]


def _init_argv(name: str, datadir: str) -> tuple[str, list[str], list[str]]:
    """(owner, the server's --version argv, the argv that initialises `datadir`)."""
    if name == "postgres":
        init = [
            _postgres_bin("initdb"), "-D", datadir, "-U", "postgres", "-A", "trust",
            "--no-sync", "-E", "UTF8", "--locale=C", "--wal-segsize=1",
        ]  # fmt: skip
        return "postgres", [_postgres_bin("postgres"), "--version"], _as_user("postgres", init)
    if name == "mariadb":
        init = [
            "mariadb-install-db", "--no-defaults", f"--datadir={datadir}", "--user=mysql",
            "--skip-test-db", "--skip-name-resolve", *_INNODB,
        ]  # fmt: skip
        return "mysql", ["mariadbd", "--version"], init
    raise ValueError(name)


def _checked(argv: list[str], what: str) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(f"lab: {what}: {e}") from e
    if proc.returncode != 0:
        raise RuntimeError(f"lab: {what}: {' '.join(argv)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc.stdout


def cached_datadir(name: str) -> str:
    """The initialised data directory of `name` for the installed version, made once (atomically, so
    labs starting together may both make one, and one wins)."""
    owner, version_argv, _ = _init_argv(name, "")
    version = _checked(version_argv, f"{name} --version").strip()
    number = re.search(r"[0-9]+\.[0-9]+(?:\.[0-9]+)?", version)
    digest = hashlib.sha256(repr((version, _init_argv(name, "@")[2])).encode()).hexdigest()[:12]
    path = os.path.join(CACHE_DIR, f"{name}-{number.group(0) if number else 'x'}-{digest}")
    if os.path.isdir(path):
        return path
    os.makedirs(CACHE_DIR, mode=0o755, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=CACHE_DIR, prefix=f".{name}-")
    try:
        ent = _user(owner)
        os.chown(tmp, ent.pw_uid, ent.pw_gid)
        os.chmod(tmp, 0o700)
        _checked(_init_argv(name, tmp)[2], f"initialising {name}'s data directory")
        try:
            os.rename(tmp, path)
        except OSError:
            if not os.path.isdir(path):  # not a lost race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


# The copies live in memory (tmpfs): on a disk a copy of ~50 MB takes seconds on a busy machine.
DATA_DIR = os.path.join("/dev/shm", os.path.basename(STATE_DIR))


def datadir(name: str) -> str:
    return os.path.join(DATA_DIR, name)


def remove_datadirs() -> bool:
    """Remove the databases' copies (lab down); True if there were any."""
    if not os.path.isdir(DATA_DIR):
        return False
    shutil.rmtree(DATA_DIR, ignore_errors=True)
    return True


def _copy_datadir(name: str) -> None:
    os.makedirs(DATA_DIR, mode=0o755, exist_ok=True)
    shutil.rmtree(datadir(name), ignore_errors=True)
    _checked(["cp", "-a", cached_datadir(name), datadir(name)], f"copying {name}'s data directory")


def prepare_datadirs() -> list[concurrent.futures.Future[None]]:
    """Start laying out the databases' data directories in STATE_DIR (in parallel with the rest)."""
    pool = concurrent.futures.ThreadPoolExecutor(len(DATADIRS), thread_name_prefix="lab-datadir")
    try:
        return [pool.submit(_copy_datadir, name) for name in DATADIRS]
    finally:
        pool.shutdown(wait=False)


def finish_datadirs(futures: list[concurrent.futures.Future[None]]) -> None:
    errors = []
    for fut in futures:
        try:
            fut.result(timeout=300)
        except Exception as e:  # every copy waited for before any error is raised
            errors.append(e)
    if errors:
        raise errors[0] if isinstance(errors[0], RuntimeError) else RuntimeError(f"lab: {errors[0]}")


def finish_keygen(keygen: list[subprocess.Popen[bytes]]) -> None:
    for proc in keygen:
        try:
            out, _ = proc.communicate(timeout=CMD_TIMEOUT)
        except subprocess.TimeoutExpired as e:
            proc.kill()
            proc.communicate()
            raise RuntimeError(f"lab: {proc.args[0]} timed out") from e  # type: ignore[index]
        if proc.returncode != 0:
            raise RuntimeError(
                f"lab: {' '.join(proc.args)} exited {proc.returncode}: "  # type: ignore[arg-type]
                f"{out.decode(errors='replace').strip()}"
            )


def write_configs() -> None:
    _render("nginx.conf", os.path.join(STATE_DIR, "nginx.conf"))
    _render("index.html", os.path.join(STATE_DIR, "www", "index.html"))
    # A page longer than one segment: nginx (sendfile off) sends headers and body in one write,
    # so a large enough --ack-window gets a full-MSS first segment (tests of `truncated`).
    with open(os.path.join(STATE_DIR, "www", BIG_PAGE.lstrip("/")), "w") as fh:
        fh.write("".join(f"line {i:04d} of a page longer than any segment\n" for i in range(100)))
    _render("sshd_config", os.path.join(STATE_DIR, "sshd_config"), 0o600)
    _render("vsftpd.conf", os.path.join(STATE_DIR, "vsftpd.conf"), 0o600)
    _render("dnsmasq.conf", os.path.join(STATE_DIR, "dnsmasq.conf"))
    _render("chrony.conf", os.path.join(STATE_DIR, "chrony.conf"))
    _render("mosquitto.conf", os.path.join(STATE_DIR, "mosquitto.conf"))
    _render("exim.conf", os.path.join(STATE_DIR, "exim.conf"))
    _render("dovecot.conf", os.path.join(STATE_DIR, "dovecot.conf"))
    open(os.path.join(STATE_DIR, "dovecot.users"), "w").close()  # nobody
    _render("pg_hba.conf", os.path.join(STATE_DIR, "pg_hba.conf"))
    _render("target.nft", os.path.join(STATE_DIR, "target.nft"))
    _render("router.nft", os.path.join(STATE_DIR, "router.nft"))
    # Empty allow-list: with userlist_deny=NO nobody may log in.
    open(os.path.join(STATE_DIR, "vsftpd.user_list"), "w").close()
    os.chmod(os.path.join(STATE_DIR, "tls", "lab.key"), 0o600)


def server_argv(name: str) -> list[str]:
    s = STATE_DIR
    if name == "nginx":
        return ["nginx", "-p", s, "-e", f"{s}/nginx.log", "-c", f"{s}/nginx.conf"]
    if name == "sshd":
        # sshd re-execs itself per connection and insists on an absolute path.
        return [shutil.which("sshd") or "/usr/sbin/sshd", "-D", "-e", "-f", f"{s}/sshd_config"]
    if name == "vsftpd":
        return ["vsftpd", f"{s}/vsftpd.conf"]
    if name == "redis":
        return [
            "redis-server", "--port", str(PORTS["redis"]), "--bind", "0.0.0.0", "::",
            "--protected-mode", "no", "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--dir", s, "--pidfile", f"{s}/run/redis.pid", "--tcp-backlog", "65535",
        ]  # fmt: skip
    if name == "dnsmasq":
        # -C: never /etc/dnsmasq.conf. Wildcard socket + IP_PKTINFO: answers on every AnyIP address.
        return ["dnsmasq", "--keep-in-foreground", "-C", f"{s}/dnsmasq.conf"]
    if name == "chronyd":
        # -x: never adjust the clock; -u root: pid and drift files stay writable in STATE_DIR.
        return ["chronyd", "-d", "-x", "-u", "root", "-f", f"{s}/chrony.conf"]
    if name == "postgres":
        # No Unix socket, no fsync (a throw-away copy); logs to stderr.
        return _as_user("postgres", [
            _postgres_bin("postgres"), "-D", datadir(name), "-c", "listen_addresses=*",
            "-c", f"port={PORTS['postgres']}", "-c", "unix_socket_directories=", "-c", "fsync=off",
            "-c", f"hba_file={s}/pg_hba.conf", "-c", "max_connections=200", "-c", "shared_buffers=16MB",
            "-c", "logging_collector=off",
        ])  # fmt: skip
    if name == "mariadb":
        # Starts as root, becomes mysql in place. No grant tables (a scanner from any address gets the
        # ordinary greeting, not "host not allowed"), no name lookups, no blocking of a host whose
        # connections end before the handshake (a scanner's all do). --bind-address=*: IPv4 and IPv6.
        d = datadir(name)
        return [
            "mariadbd", "--no-defaults", f"--datadir={d}", "--user=mysql", f"--port={PORTS['mysql']}",
            "--bind-address=*", f"--socket={d}/mysqld.sock", f"--pid-file={d}/mariadbd.pid",
            "--skip-name-resolve", "--skip-grant-tables", "--skip-log-bin", *_INNODB,
            "--max-connect-errors=4294967295", "--max-connections=1000", "--back-log=65535",
            "--innodb-fast-shutdown=2",  # a throw-away copy: lab down need not wait for a clean stop
        ]  # fmt: skip
    if name == "memcached":
        # -U 0: no UDP.
        return [
            "memcached", "-u", "memcache", "-l", "0.0.0.0,[::]", "-p", str(PORTS["memcached"]), "-U", "0",
            "-c", "4096", "-b", "65535",
        ]  # fmt: skip
    if name == "mosquitto":
        return ["mosquitto", "-c", f"{s}/mosquitto.conf"]
    if name == "exim":
        # -bdf: the listening daemon in the foreground; -C: the lab's config only (root may use any).
        return ["exim4", "-C", f"{s}/exim.conf", "-bdf"]
    if name == "dovecot":
        return ["dovecot", "-F", "-c", f"{s}/dovecot.conf"]
    raise ValueError(name)


def start_server(name: str) -> subprocess.Popen[bytes]:
    argv = ns_exec_argv(TARGET_NS, server_argv(name))
    with open(log_path(name), "ab") as log:
        try:
            # New session: the servers must outlive the `lab up` CLI process
            # and must not get its terminal's SIGINT.
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, cwd=STATE_DIR
            )
        except OSError as e:
            raise RuntimeError(f"lab: starting {name} failed: {e}") from e
    procs.CHILDREN[proc.pid] = proc
    # `ip netns exec` execs the server in place, so this pid is the server itself.
    with open(os.path.join(STATE_DIR, f"{name}.pid"), "w") as f:
        f.write(f"{proc.pid}\n")
    return proc


def _accepting(host: str, ports: list[int]) -> set[int]:
    ok = set()
    for port in ports:
        try:
            with socket.create_connection((host, port), timeout=0.3) as sock:
                # Closed with a RST now: a greeting sent later (exim takes seconds) would otherwise
                # meet a closed socket and draw a RST from the scan namespace's kernel in the middle
                # of a test's capture (the tests check the kernel never sends one during a scan).
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                ok.add(port)
        except OSError:
            pass
    return ok


def _answering(host: str, names: list[str]) -> set[str]:
    """The servers in `names` that fully answer on host (TCP connect, DNS A record, NTP mode 4)."""
    tcp = sorted({PORTS[k] for n in names for k in SERVERS[n] if "tcp" in PORT_PROTOS[k]})
    ok_tcp = _accepting(host, tcp)
    out = set()
    for name in names:
        keys = SERVERS[name]
        if not {PORTS[k] for k in keys if "tcp" in PORT_PROTOS[k]} <= ok_tcp:
            continue
        if "dns" in keys and not _dns_ok(host):
            continue
        if "ntp" in keys and not _ntp_ok(host):
            continue
        out.add(name)
    return out


def wait_ready(
    started: dict[str, subprocess.Popen[bytes]], from_ns: str = SCAN_NS, timeout: float = READY_TIMEOUT
) -> None:
    pending = set(started)
    deadline = time.monotonic() + timeout
    while pending:
        for name, proc in started.items():
            if name in pending and proc.poll() is not None:
                raise RuntimeError(
                    f"lab: {name} exited with status {proc.returncode} while starting; "
                    f"see {log_path(name)}:\n{log_tail(name)}"
                )
        # Ask from the scanner's side: proves the veths, the router, the
        # addresses and the server all work, not just that something is bound.
        names = sorted(pending)
        # Over IPv4 and IPv6 both: a server answering one family only is not ready.
        pending -= netns.run_in(
            from_ns, lambda names=names: _answering(READY_ADDR, names) & _answering(READY_ADDR6, names)
        )
        if not pending:
            return
        if time.monotonic() >= deadline:
            name = sorted(pending)[0]
            ports = [PORTS[k] for k in SERVERS[name]]
            raise RuntimeError(
                f"lab: {name} did not answer on {READY_ADDR} and [{READY_ADDR6}] {ports} "
                f"(asked from {from_ns}) within {timeout:.0f}s; see {log_path(name)}:\n{log_tail(name)}"
            )
        time.sleep(0.05)
