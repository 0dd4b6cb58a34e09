"""Run a PgBouncer in transaction mode in front of a PostgreSQL server, for tests.

This module is private: the pytest plugin (:mod:`chancy.testing`) uses it
for the ``chancy_pgbouncer_dsn`` fixture, where its behaviour is documented.
In short, :class:`PgBouncer` starts the ``pgbouncer`` binary (``CHANCY_PGBOUNCER``,
else ``pgbouncer`` on ``PATH``, else ``/usr/sbin/pgbouncer``, where Debian's
package puts it) on ``127.0.0.1`` at a free port, with
``pool_mode = transaction``, ``auth_type = trust`` and every database of the
server behind it, and :meth:`PgBouncer.dsn_for` turns a DSN of that server
into the same DSN through the pooler. PgBouncer refuses to run as root: as
root it runs as the ``postgres`` system user (else ``nobody``).

The pool is deliberately small (``default_pool_size = 4``), so that client
connections share server connections, as they do in production: anything
that outlives a transaction (a prepared statement, ``LISTEN``, a session
advisory lock, ``SET``) shows up as a failure at once. PgBouncer 1.21 and
newer can track protocol-level prepared statements
(``max_prepared_statements``); it is set to 0 here, like every older version.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any, Final, Self

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = ["ENV_PGBOUNCER", "PgBouncer", "find_pgbouncer"]

#: Environment variable naming the ``pgbouncer`` binary.
ENV_PGBOUNCER: Final = "CHANCY_PGBOUNCER"

_START_TIMEOUT = 15.0


def find_pgbouncer() -> str | None:
    """The path of the ``pgbouncer`` binary, or ``None`` if it is not installed."""
    explicit = os.environ.get(ENV_PGBOUNCER)
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which("pgbouncer")
    if found:
        return found
    for candidate in ("/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _version(binary: str) -> tuple[int, ...]:
    out = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    match = re.search(r"PgBouncer (\d+)\.(\d+)", out)
    return (int(match[1]), int(match[2])) if match else (0, 0)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _quote(value: str) -> str:
    """A value of a libpq-style ``key=value`` list in pgbouncer.ini."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class PgBouncer:
    """A PgBouncer process in transaction mode in front of ``server_dsn``."""

    def __init__(
        self, server_dsn: str, *, binary: str | None = None, pool_size: int = 4
    ) -> None:
        self.server_dsn = server_dsn
        found = binary or find_pgbouncer()
        if found is None:
            raise RuntimeError(
                "PgBouncer is not installed (Debian/Ubuntu: apt-get install"
                f" pgbouncer), or set {ENV_PGBOUNCER} to its path"
            )
        self.binary: str = found
        self.pool_size = pool_size
        self.port: int | None = None
        self.directory: str | None = None
        self._process: subprocess.Popen[Any] | None = None
        self._owner_pid = os.getpid()

    # ------------------------------------------------------------------

    def dsn_for(self, dsn: str) -> str:
        """``dsn`` (a DSN of the server) through this PgBouncer."""
        if self.port is None:
            raise RuntimeError("PgBouncer is not started")
        params = conninfo_to_dict(dsn)
        params.update(host="127.0.0.1", port=str(self.port))
        params.pop("hostaddr", None)
        return make_conninfo(**params)  # type: ignore[arg-type]

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        self.directory = tempfile.mkdtemp(prefix="chancy-pgbouncer-")
        run_as = self._run_as()
        self._write_config(run_as)
        for attempt in range(3):
            self.port = _free_port()
            self._write_ini()
            log = open(os.path.join(self.directory, "pgbouncer.log"), "wb")  # noqa: SIM115
            kwargs: dict[str, Any] = {"stdout": log, "stderr": subprocess.STDOUT}
            if run_as is not None:
                kwargs.update(user=run_as[0], group=run_as[1], extra_groups=[])
            with log:
                self._process = subprocess.Popen(
                    [self.binary, os.path.join(self.directory, "pgbouncer.ini")],
                    cwd=self.directory,
                    **kwargs,
                )
            try:
                self._wait_until_ready()
            except _PortInUseError:
                if attempt == 2:
                    raise
                continue
            break
        atexit.register(self._atexit_stop)
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(OSError):
                process.send_signal(signal.SIGTERM)  # immediate shutdown
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<PgBouncer port={self.port} running={self.running}>"

    # ------------------------------------------------------------------

    def _atexit_stop(self) -> None:
        if os.getpid() == self._owner_pid:
            self.stop()

    @staticmethod
    def _run_as() -> tuple[int, int] | None:
        """PgBouncer refuses to run as root: the user to run it as instead."""
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            return None
        import pwd

        for name in ("postgres", "nobody"):
            try:
                pw = pwd.getpwnam(name)
            except KeyError:
                continue
            if pw.pw_uid != 0:
                return pw.pw_uid, pw.pw_gid
        raise RuntimeError(
            "running as root, and PgBouncer refuses to run as root: there is no"
            " 'postgres' or 'nobody' user to run it as"
        )

    def _write_config(self, run_as: tuple[int, int] | None) -> None:
        assert self.directory is not None
        server = conninfo_to_dict(self.server_dsn)
        user = str(server.get("user") or os.environ.get("PGUSER") or "postgres")
        password = str(server.get("password") or "")
        # auth_type = trust checks no client password; PgBouncer logs in to
        # the server with the password of the auth_file, if any.
        with open(os.path.join(self.directory, "users.txt"), "w") as f:
            f.write(f'"{user}" "{password}"\n')
        target = {
            "host": str(server.get("host") or "127.0.0.1"),
            "port": str(server.get("port") or "5432"),
        }
        self._databases = " ".join(f"{k}={_quote(v)}" for k, v in target.items())
        if run_as is not None:
            os.chown(self.directory, *run_as)
            for name in ("users.txt",):
                os.chown(os.path.join(self.directory, name), *run_as)
        os.chmod(self.directory, 0o700)

    def _write_ini(self) -> None:
        assert self.directory is not None
        lines = [
            "[databases]",
            f"* = {self._databases}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "auth_type = trust",
            f"auth_file = {os.path.join(self.directory, 'users.txt')}",
            "pool_mode = transaction",
            f"default_pool_size = {self.pool_size}",
            "min_pool_size = 0",
            "reserve_pool_size = 0",
            "max_client_conn = 1000",
            "max_db_connections = 0",
            "server_reset_query =",
            "ignore_startup_parameters = extra_float_digits,options",
            "log_connections = 0",
            "log_disconnections = 0",
        ]
        if _version(self.binary) >= (1, 21):
            lines.append("max_prepared_statements = 0")
        path = os.path.join(self.directory, "pgbouncer.ini")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        run_as = self._run_as()
        if run_as is not None:
            os.chown(path, *run_as)

    def _read_log(self) -> str:
        if self.directory is None:
            return ""
        try:
            with open(os.path.join(self.directory, "pgbouncer.log"), "rb") as f:
                return f.read()[-4000:].decode(errors="replace")
        except OSError:
            return ""

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + _START_TIMEOUT
        dsn = self.dsn_for(self.server_dsn)
        while True:
            if self._process.poll() is not None:
                log = self._read_log()
                self._process = None
                if "Address already in use" in log:
                    raise _PortInUseError(log)
                raise RuntimeError(f"PgBouncer exited during start-up. Log:\n{log}")
            try:
                with psycopg.connect(dsn, connect_timeout=2, autocommit=True) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"PgBouncer did not accept connections within"
                    f" {_START_TIMEOUT:.0f}s. Log:\n{self._read_log()}"
                )
            time.sleep(0.05)


class _PortInUseError(RuntimeError):
    pass
