"""A throwaway PostgreSQL server on loopback, from the binaries of Debian's `postgresql` package.

    server = start(tmpdir)          # initdb + pg_ctl start on a free 127.0.0.1 port
    server.url                      # postgresql+psycopg://sparsity:<password>@127.0.0.1:<port>/postgres
    server.create_database("t1")    # -> the URL of a fresh, empty database
    server.stop()                   # stops it and removes its folder

Used by the test fixture (tests/conftest.py), the benchmarks and `make cluster`. The server listens
on 127.0.0.1 only (no Unix socket), and asks for a random password, so another local user cannot
walk in. initdb refuses to run as root: as root the server runs as the `postgres` user
(`runuser -u postgres --`) in a folder it owns. `fast=True` (the default) turns off fsync: a crash
may lose the data, which for a throwaway server is the point (tests are several times faster).
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

USER = "sparsity"


class PgServerError(RuntimeError):
    """The server could not be started (its log's last lines are in the message)."""


def binaries() -> Optional[Path]:
    """The folder holding initdb and pg_ctl: the newest /usr/lib/postgresql/N/bin, else PATH's."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


@dataclass
class Server:
    url: str  # the `postgres` maintenance database; create_database gives a fresh one
    folder: Path
    port: int
    bin: Path
    _as_postgres: bool
    keep: bool = False

    def create_database(self, name: str) -> str:
        """Create an empty database `name` (letters, digits, underscores) and return its URL."""
        import psycopg

        if not name.replace("_", "").isalnum():
            raise ValueError(f"not a plain database name: {name!r}")
        with psycopg.connect(self.url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def stop(self) -> None:
        """Stop the server; remove its folder unless it was started with keep=True."""
        mode = "fast" if self.keep else "immediate"
        _run(self, [str(self.bin / "pg_ctl"), "stop", "-D", str(self.folder / "data"), "-m", mode, "-w"],
             check=False)
        if not self.keep:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()


def _run(server: Server, argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    if server._as_postgres:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        raise PgServerError(f"{Path(argv[-1] if server._as_postgres else argv[0]).name} failed: "
                            f"{(done.stderr or done.stdout).strip()[-600:]}")
    return done


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _folder(tmpdir: Optional[Path], as_postgres: bool) -> Path:
    """A folder the server's user owns. pytest's base folder for root is mode 0700, which the
    postgres user cannot enter: then the folder goes under the system's temp dir instead."""
    base = Path(tmpdir) if tmpdir else Path(tempfile.gettempdir())
    if as_postgres and not _postgres_can_enter(base):
        base = Path(tempfile.gettempdir())
    folder = Path(tempfile.mkdtemp(prefix="sparsity-pg-", dir=base))
    if as_postgres:
        shutil.chown(folder, "postgres", "postgres")
    return folder


def _postgres_can_enter(path: Path) -> bool:
    return subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(path)],
                          capture_output=True).returncode == 0


def start(tmpdir: Optional[Path] = None, *, fast: bool = True, keep: bool = False,
          folder: Optional[Path] = None) -> Server:
    """Start a server in a new folder under `tmpdir` (or in `folder`, reusing a database already
    initialised there: `keep=True` leaves it for the next start). Raises PgServerError."""
    bin_dir = binaries()
    if bin_dir is None:
        raise PgServerError("PostgreSQL is not installed: no initdb (Debian: apt-get install postgresql)")
    as_postgres = os.geteuid() == 0
    if as_postgres:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise PgServerError("initdb refuses root, and there is no 'postgres' user to run it as") from None
    if folder is None:
        folder = _folder(tmpdir, as_postgres)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        if as_postgres:
            shutil.chown(folder, "postgres", "postgres")
    server = Server("", folder, 0, bin_dir, as_postgres, keep)
    password = _init(server, fast)
    for _attempt in range(5):  # another process may take the free port first: try another
        server.port = _free_port()
        server.url = f"postgresql+psycopg://{USER}:{password}@127.0.0.1:{server.port}/postgres"
        options = (f"-c listen_addresses=127.0.0.1 -p {server.port} -c unix_socket_directories='' "
                   "-c max_connections=200" + (" -c fsync=off -c synchronous_commit=off "
                                               "-c full_page_writes=off" if fast else ""))
        done = _run(server, [str(bin_dir / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(folder / "data"),
                             "-l", str(folder / "log"), "-o", options], check=False)
        if done.returncode == 0:
            return server
    log = (folder / "log").read_text(errors="replace")[-800:] if (folder / "log").exists() else ""
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
    raise PgServerError(f"pg_ctl start failed: {(done.stderr or done.stdout).strip()[-400:]} {log}".strip())


def _init(server: Server, fast: bool) -> str:
    """initdb with a random password for the `sparsity` superuser (kept in folder/password, mode
    0600); a folder initialised before is reused with its password."""
    pw_file = server.folder / "password"
    if (server.folder / "data" / "PG_VERSION").exists() and pw_file.exists():
        return pw_file.read_text().strip()
    password = secrets.token_hex(16)
    pw_file.write_text(password + "\n")
    pw_file.chmod(0o600)
    if server._as_postgres:
        shutil.chown(pw_file, "postgres", "postgres")
    argv = [str(server.bin / "initdb"), "-D", str(server.folder / "data"), "-U", USER, "--pwfile", str(pw_file),
            "--auth=scram-sha-256", "-E", "UTF8", "--locale=C"] + (["--no-sync"] if fast else [])
    _run(server, argv)
    return password
