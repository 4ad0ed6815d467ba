"""A throw-away PostgreSQL cluster owned by a test: initdb in a temp dir,
started with pg_ctl on a free port on 127.0.0.1, stopped and removed at the end.

PostgreSQL refuses to run as root, and CI runs as root: then the cluster is
created and run as the unprivileged `postgres` system user (Debian's package
creates it) through `runuser`.
"""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SERVER_USER = "postgres"
PASSWORD = "churn-test"
USER = "churn"


def server_bin_dir() -> Path | None:
    """Directory of initdb/pg_ctl/postgres (Debian keeps them out of PATH)."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name)
                        if p.parent.name.isdigit() else 0, reverse=True)
    for directory in candidates:
        if all((directory / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return directory
    on_path = shutil.which("pg_ctl")
    if on_path and (Path(on_path).resolve().parent / "postgres").exists():
        return Path(on_path).resolve().parent
    return None


def missing_reason() -> str | None:
    """Why a PostgreSQL cluster cannot be started here, or None."""
    if server_bin_dir() is None:
        return "PostgreSQL server binaries not found (apt-get install postgresql; .ci/run does)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root and there is no '{SERVER_USER}' user to run the server as"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed (dev extra)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class PgCluster:
    host: str
    port: int
    user: str
    password: str
    datadir: Path

    def url(self, db: str, scheme: str = "postgresql+psycopg2") -> str:
        return f"{scheme}://{self.user}:{self.password}@{self.host}:{self.port}/{db}"

    def connect(self, db: str):
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password, dbname=db)

    def dagster_env(self, db: str = "dagster") -> dict[str, str]:
        """The DAGSTER_PG_* variables deploy/dagster.yaml reads."""
        return {"DAGSTER_PG_HOST": self.host, "DAGSTER_PG_PORT": str(self.port), "DAGSTER_PG_USER": self.user,
                "DAGSTER_PG_PASSWORD": self.password, "DAGSTER_PG_DB": db}


@contextmanager
def running_cluster(databases: tuple[str, ...] = ("dagster", "mlflow")) -> Iterator[PgCluster]:
    """Start a private cluster with `databases` created; stop and delete it after."""
    reason = missing_reason()
    if reason:
        raise RuntimeError(reason)
    bin_dir = server_bin_dir()
    as_root = os.geteuid() == 0
    # Not under pytest's tmp_path: that is 0700 root-owned, out of reach of `postgres`.
    base = Path(tempfile.mkdtemp(prefix="churn-pg-"))
    datadir, sockets, pwfile = base / "data", base / "sock", base / "pwfile"
    sockets.mkdir()
    pwfile.write_text(PASSWORD + "\n")
    if as_root:
        owner = pwd.getpwnam(SERVER_USER)
        for path in (base, sockets, pwfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    prefix = ["runuser", "-u", SERVER_USER, "--"] if as_root else []

    def run(*args: str) -> None:
        done = subprocess.run([*prefix, *args], capture_output=True, text=True, cwd=base, timeout=120)
        if done.returncode:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}): {done.stdout}\n{done.stderr}")

    port = free_port()
    run(str(bin_dir / "initdb"), "-D", str(datadir), "-U", USER, f"--pwfile={pwfile}", "-A", "scram-sha-256",
        "-E", "UTF8", "--locale=C", "--no-sync")
    options = (f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={sockets} "
               "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    try:
        run(str(bin_dir / "pg_ctl"), "-D", str(datadir), "-o", options, "-l", str(base / "server.log"), "-w", "-t", "60", "start")
        cluster = PgCluster("127.0.0.1", port, USER, PASSWORD, datadir)
        con = cluster.connect("postgres")
        con.autocommit = True
        with con.cursor() as cur:
            for db in databases:
                assert db.isidentifier(), db
                cur.execute(f'CREATE DATABASE "{db}"')
        con.close()
        yield cluster
    finally:
        subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(datadir), "-m", "immediate", "-w", "stop"],
                       capture_output=True, cwd=base, timeout=60)
        shutil.rmtree(base, ignore_errors=True)
