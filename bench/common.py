"""Helpers shared by the benchmark scripts: free ports, a gw subprocess with a generated pipeline, pgbouncer."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TypedDict

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


class Upstream(TypedDict):
    host: str
    port: int
    user: str


#: The PostgreSQL every benchmark measures against (trust authentication).
PG: Upstream = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fdatasync_ms(where: str | Path | None, n: int = 100) -> float:
    """Median time of one ``fdatasync`` of a 4 kB append in directory ``where``: the disk's floor for a durable
    commit there."""
    fd, path = tempfile.mkstemp(dir=where)
    try:
        times = []
        for _ in range(n):
            os.write(fd, b"x" * 4096)
            t = time.perf_counter()
            os.fdatasync(fd)
            times.append(time.perf_counter() - t)
        return sorted(times)[len(times) // 2] * 1e3
    finally:
        os.close(fd)
        os.unlink(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def psql(sql: str, db: str = "postgres", *, check: bool = True) -> str:
    out = subprocess.run(["psql", "-h", PG["host"], "-p", str(PG["port"]), "-U", PG["user"], "-d", db, "-Atqc", sql],
                         capture_output=True, text=True, check=False)
    if check and out.returncode != 0:
        raise RuntimeError(out.stderr)
    return out.stdout.strip()


STAGES = {
    "audit": '{ use = "audit" }',
    "full": """{ use = "audit" },
  { use = "guard", deny = [
      { kind = "ddl", except_groups = ["dba"] },
      { verb = "truncate" },
      { kind = "unknown", message = "statement not recognised; rewrite it in plain SQL" },
  ] },
  { use = "approve", approvers = ["dba"], timeout = "10m", mode = "hold", require = [
      { kind = "write", flags = ["no_where"] },
      { verb = ["grant", "revoke"] },
      { objects = ["public.payments*"], kind = "write" },
  ] },
  { use = "mask", strategy = "redact", columns = MASK_COLUMNS,
    detectors = ["us_ssn", "credit_card", "email", "iban"] },
  { use = "record" },""",
    "mask": """{ use = "audit" },
  { use = "mask", strategy = "redact", columns = MASK_COLUMNS },""",
    # The mask stage of examples/agents.toml: columns by name plus its value detectors.
    "mask-detect": """{ use = "audit" },
  { use = "mask", strategy = "redact", columns = MASK_COLUMNS,
    detectors = ["us_ssn", "credit_card", "email", "iban"] },""",
    "none": "",
}


class Gateway:
    """``gw serve`` on a generated pipeline in a temporary directory, with a dev token for the agent."""

    def __init__(self, stages: str, database: str, *, mask_columns: str = '["ssn", "*.card_number"]',
                 upstream_port: int = 5432, extra_listener: str = "", disable_plugins: str = "") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="gw-bench-"))
        self.stages = stages
        self.port = free_port()
        self.secret = secrets.token_urlsafe(32)
        stage_text = STAGES[stages].replace("MASK_COLUMNS", mask_columns)
        (self.dir / "pipeline.toml").write_text(f"""
[gateway]
data_dir = "state"

[storage]
use = "sqlite"
path = "state/gw.db"

[identity.dev]
use = "jwt"
issuer = "gw-bench"
audience = "gw"
secret_env = "GW_DEV_SECRET"

[pipelines.bench]
stages = [
  {stage_text}
]

[[listeners]]
name = "pg"
protocol = "postgres"
listen = "127.0.0.1:{self.port}"
identity = "dev"
pipeline = "bench"
{extra_listener}

[listeners.upstream]
host = "127.0.0.1"
port = {upstream_port}
database = "{database}"
user = "postgres"
""")
        self.env = {**os.environ, "GW_DEV_SECRET": self.secret}
        if disable_plugins:  # what a deployment that installed only the plugins it uses would load
            self.env["GW_DISABLE_PLUGINS"] = disable_plugins
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Gateway:
        self.log = open(self.dir / "gw.log", "wb")  # noqa: SIM115 (open while gw runs)
        self.proc = subprocess.Popen([str(BIN / "gw"), "serve", str(self.dir / "pipeline.toml"),
                                      "--log-level", "warning"], env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        wait_port(self.port)
        return self

    def token(self, sub: str = "bench-agent", groups: tuple[str, ...] = ("agents",)) -> str:
        args = [str(BIN / "gw"), "token", "issue", "-c", str(self.dir / "pipeline.toml"), "--identity", "dev",
                "--sub", sub, "--ttl", "2h"]
        for g in groups:
            args += ["--group", g]
        return subprocess.run(args, env=self.env, capture_output=True, text=True, check=True).stdout.strip()

    def rss_kb(self) -> int:
        assert self.proc is not None
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        m = re.search(r"VmRSS:\s+(\d+) kB", status)
        return int(m.group(1)) if m else 0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class Relay:
    def __init__(self, upstream_port: int = 5432) -> None:
        self.port = free_port()
        self.upstream_port = upstream_port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Relay:
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "trio_relay.py"), str(self.port),
                                      "127.0.0.1", str(self.upstream_port)], stdout=subprocess.DEVNULL)
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)


def ensure_pgbouncer() -> str:
    found = shutil.which("pgbouncer") or (os.path.exists("/usr/sbin/pgbouncer") and "/usr/sbin/pgbouncer")
    if found:
        return str(found)
    print("pgbouncer is not installed; installing the Debian package ...", file=sys.stderr)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True)
    subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "pgbouncer"], check=True,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


class PgBouncer:
    """pgbouncer in session mode on a free loopback port (runs as user postgres when started as root)."""

    def __init__(self, database: str, pool_mode: str = "session", max_client_conn: int = 200,
                 pool_size: int = 40) -> None:
        self.binary = ensure_pgbouncer()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="gw-bench-pgb-"))
        os.chmod(self.dir, 0o777)
        (self.dir / "users.txt").write_text('"postgres" ""\n')
        (self.dir / "pgbouncer.ini").write_text(f"""[databases]
{database} = host=127.0.0.1 port=5432 dbname={database} user=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.dir}/users.txt
pool_mode = {pool_mode}
max_client_conn = {max_client_conn}
default_pool_size = {pool_size}
logfile = {self.dir}/pgbouncer.log
pidfile = {self.dir}/pgbouncer.pid
""")
        for f in self.dir.iterdir():
            os.chmod(f, 0o666)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PgBouncer:
        args = [self.binary, str(self.dir / "pgbouncer.ini")]
        if os.geteuid() == 0:
            args[1:1] = ["-u", "postgres"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)
