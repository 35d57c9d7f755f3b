"""A throwaway PostgreSQL server for tests, from Debian's `postgresql` package.

`start_pg_server` makes a cluster in a temp dir with initdb and starts it with
pg_ctl in a session of its own (setsid): it listens on 127.0.0.1 only, on a
free port, with its Unix socket and its log in that dir, and fsync off. Then it
creates a database and a password user (not a superuser) and returns a
`PgServer` whose `dsn` is postgresql://user:password@127.0.0.1:port/db;
`fresh_database()` makes one more empty database of that user's and returns
its DSN, for a test that wants a database of its own.
`PgServer.stop` stops it (pg_ctl stop -m fast, SIGKILL when it lingers) and
removes the dir. When it cannot start, the failure names its log and shows the
end of it.

PostgreSQL refuses to run as root: when the tests run as root, initdb and the
server run as the system user `grace-test`; otherwise as the user running the
tests. `scripts/test-deps.sh` installs `postgresql` and creates that user; when
either is missing the fixture fails and says so: these tests never skip.

The session fixtures `pg_server` and `pg_dsn` (one server per test session) are
imported into tests/conftest.py, so every test can ask for them by name.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

SERVER_OS_USER = "grace-test"
"""Who initdb and the server run as when the tests run as root (test-deps.sh creates it)."""
SUPERUSER = "postgres"
"""The cluster's superuser; reachable only through the socket in the server's dir."""
DB_NAME = "grace"
DB_USER = "grace"
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
PROGRAMS = ("initdb", "pg_ctl", "postgres", "pg_isready", "psql")

_START_WITHIN_S = 60
_STOP_WITHIN_S = 20
_PORT_TRIES = 3
_POLL_S = 0.05
_LOG_TAIL_CHARS = 3000
_INSTALL_HINT = "run scripts/test-deps.sh as root (it installs Debian's postgresql)"


def _major_key(bindir: Path) -> tuple[int, ...]:
    """/usr/lib/postgresql/15/bin -> (15,): majors sort by number; other names as (-1,)."""
    parts = bindir.parent.name.split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else (-1,)


def find_bindir() -> Path | None:
    """A folder with all of PROGRAMS: Debian's newest /usr/lib/postgresql/<major>/bin
    (off PATH), else `pg_config --bindir`, else where `initdb` is on PATH."""
    candidates = sorted(DEBIAN_PG_ROOT.glob("*/bin"), key=_major_key, reverse=True)
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            candidates.append(Path(out.stdout.strip()))
    initdb = shutil.which("initdb")
    if initdb is not None:
        candidates.append(Path(initdb).resolve().parent)
    for bindir in candidates:
        if all(os.access(bindir / program, os.X_OK) for program in PROGRAMS):
            return bindir
    return None


def server_account() -> pwd.struct_passwd:
    """The unprivileged account the server runs as: SERVER_OS_USER under root, else ours."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam(SERVER_OS_USER)
    except KeyError:
        pytest.fail(
            f"the tests run as root and PostgreSQL will not, but there is no system user "
            f"{SERVER_OS_USER} to run it as: run scripts/test-deps.sh as root (it creates it)"
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PgServer:
    """A cluster under `root` (data/, the socket, server.log) run by `account`."""

    bindir: Path
    root: Path
    account: pwd.struct_passwd
    password: str
    port: int = 0
    host: str = "127.0.0.1"
    dbname: str = DB_NAME
    user: str = DB_USER

    @property
    def dsn(self) -> str:
        return self.dsn_for(self.dbname)

    def dsn_for(self, dbname: str) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{dbname}"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        """initdb's, pg_ctl's, psql's and the server's output, in that order."""
        return self.root / "server.log"

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-_LOG_TAIL_CHARS:]
        except OSError as exc:
            return f"(no log: {exc})"

    def postmaster_pid(self) -> int | None:
        """The running server's pid, from the first line of data/postmaster.pid."""
        try:
            first = (self.data / "postmaster.pid").read_text().split("\n", 1)[0]
        except OSError:
            return None
        return int(first) if first.strip().isdigit() else None

    def version(self) -> str:
        """`postgres --version` of the binaries this server runs, e.g. '15.18'."""
        out = self._run(["postgres", "--version"], capture=True).stdout
        found = re.search(r"\) (\d+(?:\.\d+)*)", out)
        return found.group(1) if found else out.strip()

    def _run(
        self, argv: Sequence[str], *, timeout: float = 60, capture: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """One of the server's programs, as `account`, in a session of its own, its
        output appended to the log (or captured). Raises on neither a non-zero exit
        nor a timeout: a program killed after `timeout` seconds returns -9."""
        as_account: dict[str, Any] = {}
        if os.geteuid() == 0:
            as_account = {
                "user": self.account.pw_uid,
                "group": self.account.pw_gid,
                "extra_groups": [],
            }
        # PG* variables of the caller's would point the programs elsewhere.
        env = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
        env.update(HOME=str(self.root), LC_ALL="C")
        command = [str(self.bindir / argv[0]), *argv[1:]]
        with open(self.log, "a") as log:
            try:
                return subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE if capture else log,
                    stderr=subprocess.STDOUT,
                    text=True,
                    cwd=self.root,
                    env=env,
                    timeout=timeout,
                    start_new_session=True,
                    check=False,
                    **as_account,
                )
            except subprocess.TimeoutExpired:
                log.write(f"\n(tests/pg_server.py: {argv[0]} killed after {timeout} s)\n")
                return subprocess.CompletedProcess(command, -signal.SIGKILL, "")

    def _fail(self, what: str) -> NoReturn:
        pytest.fail(
            f"PostgreSQL test server: {what}; its log, {self.log}, ends:\n{self.log_tail()}"
        )

    def initdb(self) -> None:
        done = self._run(
            [
                "initdb",
                "--pgdata",
                str(self.data),
                "--username",
                SUPERUSER,
                "--auth-local=trust",  # the socket lives in root, which only account can enter
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ]
        )
        if done.returncode != 0:
            self._fail(f"initdb exited with {done.returncode}")

    def start(self) -> None:
        """pg_ctl start on a free port; a port someone took meanwhile is tried again."""
        for _ in range(_PORT_TRIES):
            self.port = free_port()
            log_size = self.log.stat().st_size
            options = " ".join(
                [
                    f"-k {shlex.quote(str(self.root))}",
                    f"-p {self.port}",
                    "-c listen_addresses=127.0.0.1",
                    "-c fsync=off",
                ]
            )
            started = self._run(
                [
                    "pg_ctl",
                    "start",
                    "--pgdata",
                    str(self.data),
                    "--log",
                    str(self.log),
                    "--wait",
                    "--timeout",
                    str(_START_WITHIN_S),
                    "-o",
                    options,
                ],
                timeout=_START_WITHIN_S + 10,
            )
            if started.returncode == 0:
                self._wait_accepting()
                return
            with open(self.log, errors="replace") as log:
                log.seek(log_size)
                port_taken = "Address already in use" in log.read()
            if not port_taken:
                break
        self._fail(f"pg_ctl start exited with {started.returncode}")

    def _wait_accepting(self) -> None:
        """Poll pg_isready over TCP, as clients will connect, until a deadline."""
        deadline = time.monotonic() + _START_WITHIN_S
        while True:
            ready = self._run(
                [
                    "pg_isready",
                    "--quiet",
                    f"--host={self.host}",
                    f"--port={self.port}",
                    "--timeout=5",
                    f"--username={SUPERUSER}",
                    "--dbname=postgres",
                ],
                timeout=15,
            )
            if ready.returncode == 0:
                return
            if self.postmaster_pid() is None or time.monotonic() > deadline:
                self._fail(f"it does not accept connections on {self.host}:{self.port}")
            time.sleep(_POLL_S)

    def create_user_and_database(self) -> None:
        """A password user that owns a database of its own (and may create more)."""
        self._as_superuser(
            f"CREATE ROLE {self.user} LOGIN CREATEDB PASSWORD '{self.password}'",
            f"CREATE DATABASE {self.dbname} OWNER {self.user}",
        )

    def fresh_database(self) -> str:
        """A new empty database owned by the DSN's user, for one test: its DSN."""
        name = f"grace_{secrets.token_hex(6)}"
        self._as_superuser(f"CREATE DATABASE {name} OWNER {self.user}")
        return self.dsn_for(name)

    def _as_superuser(self, *statements: str) -> None:
        """psql as the superuser through the socket, each statement in its own transaction."""
        done = self._run(
            [
                "psql",
                "--no-psqlrc",
                "--quiet",
                "--set=ON_ERROR_STOP=1",
                f"--host={self.root}",
                f"--port={self.port}",
                f"--username={SUPERUSER}",
                "--dbname=postgres",
                *(f"--command={statement}" for statement in statements),
            ]
        )
        if done.returncode != 0:
            what = "; ".join(" ".join(statement.split()[:3]) for statement in statements)
            self._fail(f"psql exited with {done.returncode} running {what} …")

    def stop(self, *, keep_log: bool = False) -> None:
        """pg_ctl stop -m fast; SIGKILL its session when it lingers; remove the dir,
        or only the data dir with `keep_log` (a failure message names the log)."""
        if self.postmaster_pid() is not None:
            self._run(
                [
                    "pg_ctl",
                    "stop",
                    "--pgdata",
                    str(self.data),
                    "--mode=fast",
                    "--wait",
                    "--timeout",
                    str(_STOP_WITHIN_S),
                ],
                timeout=_STOP_WITHIN_S + 10,
            )
            pid = self.postmaster_pid()
            if pid is not None and self._is_postmaster(pid):
                _kill_session(pid)
        shutil.rmtree(self.data if keep_log else self.root, ignore_errors=True)

    def _is_postmaster(self, pid: int) -> bool:
        """Whether `pid` is still this server (postgres works in its data dir), not
        another process that took the pid of one that died."""
        try:
            return Path(f"/proc/{pid}/cwd").resolve(strict=True) == self.data.resolve()
        except OSError:
            return False


def _kill_session(pid: int) -> None:
    """SIGKILL the server and its backends: pg_ctl ran in a session of its own, so
    they share a process group that is not ours."""
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        if group != os.getpgrp():
            os.killpg(group, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)


def start_pg_server() -> PgServer:
    """initdb, start, wait until it accepts connections, create the user and the
    database; fail with the reason and the log's end when any step does (the log
    is kept then, the rest removed)."""
    bindir = find_bindir()
    if bindir is None:
        pytest.fail(
            f"PostgreSQL's server programs ({', '.join(PROGRAMS)}) are not installed under "
            f"{DEBIAN_PG_ROOT}/<major>/bin nor on PATH: {_INSTALL_HINT}"
        )
    account = server_account()
    root = Path(tempfile.mkdtemp(prefix="grace-pg-"))  # mode 0700
    (root / "server.log").touch(mode=0o600)
    if os.geteuid() == 0:
        for path in (root, root / "server.log"):
            os.chown(path, account.pw_uid, account.pw_gid)
    server = PgServer(bindir, root, account, password=secrets.token_hex(16))
    try:
        server.initdb()
        server.start()
        server.create_user_and_database()
    except BaseException:
        server.stop(keep_log=True)
        raise
    return server


@pytest.fixture(scope="session", name="pg_server")
def pg_server_fixture() -> Iterator[PgServer]:
    """One PostgreSQL server for the whole test session, stopped when it ends."""
    server = start_pg_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", name="pg_dsn")
def pg_dsn_fixture(pg_server: PgServer) -> str:
    """postgresql://grace:<password>@127.0.0.1:<port>/grace on the session's server."""
    return pg_server.dsn
