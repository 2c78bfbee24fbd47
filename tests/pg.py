"""A real, throw-away PostgreSQL server on loopback for tests (Debian's postgresql package)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """initdb + pg_ctl start in a temporary folder; as root the server runs as user postgres."""

    def __init__(self) -> None:
        # its own folder under /tmp: pytest's temporary folders are private to root, and the
        # server may have to run as the postgres user
        self.root = Path(tempfile.mkdtemp(prefix="flightco-pg-"))
        self.initdb, self.pg_ctl = _bin("initdb"), _bin("pg_ctl")
        self.port = _free_port()
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.as_user: list[str] = []

    def available(self) -> str | None:
        """None if a server can be started here, else the reason why not."""
        if not (self.initdb and self.pg_ctl):
            return "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
        if os.geteuid() == 0:
            if not shutil.which("runuser"):
                return "running as root without runuser to drop to the postgres user"
            try:
                import pwd

                pwd.getpwnam("postgres")
            except KeyError:
                return "running as root and no 'postgres' user exists"
            self.as_user = ["runuser", "-u", "postgres", "--"]
        try:
            import psycopg  # noqa: F401
        except ImportError:
            return "psycopg is not installed (pip install psycopg[binary])"
        return None

    def _run(self, *cmd: str) -> None:
        proc = subprocess.run([*self.as_user, *cmd], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:2])} failed: {proc.stderr.strip() or proc.stdout.strip()}")

    def start(self) -> str:
        self.sock.mkdir(exist_ok=True)
        if self.as_user:
            for path in (self.root, self.sock):
                shutil.chown(path, "postgres")
        self._run(self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        opts = f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c max_connections=100 -c fsync=off"
        self._run(self.pg_ctl, "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w", "start")
        url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        deadline = time.time() + 30
        import psycopg

        while True:
            try:
                psycopg.connect(url).close()
                return url
            except psycopg.OperationalError:
                if time.time() > deadline:
                    raise
                time.sleep(0.3)

    def stop(self) -> None:
        try:
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop")
        except (RuntimeError, subprocess.TimeoutExpired, FileNotFoundError):
            pass
        shutil.rmtree(self.root, ignore_errors=True)
