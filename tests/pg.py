"""PostgreSQL for tests: the server named by ``MESHSYNC_TEST_PG_DSN``, or a throwaway one.

Use it from a test module with ``pytest_plugins = ["pg"]`` (fixtures ``pg_server``,
``pg_dsn``).

* ``MESHSYNC_TEST_PG_DSN`` set: tests use that server. Each test gets its own
  schema (created and dropped here), so the role needs CREATE on the database.
* Otherwise a throwaway cluster is made with the Debian server binaries
  (``/usr/lib/postgresql/<newest>/bin``, else ``pg_config --bindir``, else
  ``PATH``): ``initdb`` in a private temporary directory, listening only on a Unix
  socket in that directory, trust authentication (only its owner and root can
  reach the socket). The server refuses to run as root, so under root it runs as
  the ``postgres`` user the Debian package creates, else as ``nobody``. It is
  stopped and removed when the test session ends.
* If neither is possible the tests are skipped with the reason, or fail when
  ``MESHSYNC_TEST_PG_REQUIRED=1`` (CI sets it, so PostgreSQL tests never vanish).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ENV_DSN = "MESHSYNC_TEST_PG_DSN"
ENV_REQUIRED = "MESHSYNC_TEST_PG_REQUIRED"


def unavailable(reason: str) -> None:
    """Skip the current test with ``reason`` (fail instead if PostgreSQL is required)."""
    if os.environ.get(ENV_REQUIRED) == "1":
        pytest.fail(f"PostgreSQL required ({ENV_REQUIRED}=1) but {reason}", pytrace=False)
    pytest.skip(reason)


def find_bindir() -> Path | None:
    """The directory of ``initdb`` and ``pg_ctl``, preferring Debian's newest version."""
    def version(p: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", p.parent.name))
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    candidates = list(debian)
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                             check=False)
        candidates.append(Path(out.stdout.strip()))
    if (initdb := shutil.which("initdb")) is not None:
        candidates.append(Path(initdb).resolve().parent)
    for d in candidates:
        if (d / "initdb").is_file() and (d / "pg_ctl").is_file():
            return d
    return None


class TempCluster:
    """A throwaway PostgreSQL cluster in a temporary directory (see module docs)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="meshsync-pg-",
                                         dir="/tmp" if os.geteuid() == 0 else None))
        self.data, self.log = self.dir / "data", self.dir / "server.log"
        self.user = self._unprivileged_user()
        if self.user is not None:
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        self.dsn = f"host={self.dir} port=5432 user=postgres dbname=postgres"

    @staticmethod
    def _unprivileged_user() -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            try:
                return pwd.getpwnam(name)
            except KeyError:
                continue
        raise RuntimeError("running as root and there is no postgres or nobody user")

    def _run(self, *args: str) -> None:
        kwargs: dict[str, Any] = {}
        if self.user is not None:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        env = {**os.environ, "LC_ALL": "C.UTF-8", "HOME": str(self.dir)}
        done = subprocess.run(args, cwd=self.dir, env=env, capture_output=True, text=True,
                              timeout=120, check=False, **kwargs)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{Path(args[0]).name} failed ({done.returncode}): "
                               f"{done.stderr.strip()} {log.strip()}")

    def start(self) -> None:
        """initdb and start; raises RuntimeError with the tools' output on failure."""
        initdb = [str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "-A", "trust", "-E", "UTF8", "--no-sync"]
        try:  # an ICU default collation, unlike "C", shows whether columns pin theirs
            self._run(*initdb, "--locale=C.UTF-8", "--locale-provider=icu", "--icu-locale=en")
        except RuntimeError:
            shutil.rmtree(self.data, ignore_errors=True)
            self._run(*initdb, "--no-locale")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                  "-w", "-t", "60", "-o",
                  f"-k {self.dir} -c listen_addresses='' -c max_connections=40", "start")

    def stop(self) -> None:
        """Stop the server and remove the directory."""
        try:
            if (self.data / "postmaster.pid").exists():
                # immediate: no shutdown checkpoint, the data is about to be deleted
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m",
                          "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class PgServer:
    """A reachable PostgreSQL server; hands out one fresh schema per store."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def connect(self, **kwargs: Any) -> Any:
        """A psycopg connection to the server (autocommit)."""
        import psycopg
        return psycopg.connect(self.dsn, autocommit=True, **kwargs)

    def dsn_for(self, schema: str) -> str:
        """The server's DSN with ``search_path`` set to ``schema``."""
        from psycopg.conninfo import conninfo_to_dict, make_conninfo
        options = conninfo_to_dict(self.dsn).get("options") or ""
        return make_conninfo(self.dsn, options=f"{options} -csearch_path={schema}".strip())

    def new_schema(self) -> str:
        """Create an empty schema with a unique name and return the name."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        with self.connect() as conn:
            conn.execute(f"CREATE SCHEMA {name}".encode())
        return name

    def drop_schema(self, name: str) -> None:
        """Drop ``name`` and everything in it."""
        with self.connect() as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE".encode())


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's PostgreSQL server (see module docs for where it comes from)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed (pip install -e '.[central]')")
    if os.environ.get(ENV_DSN):
        yield PgServer(os.environ[ENV_DSN])
        return
    bindir = find_bindir()
    if bindir is None:
        unavailable(f"no PostgreSQL server binaries (initdb, pg_ctl) and {ENV_DSN} "
                    "is not set; install the Debian package postgresql")
    assert bindir is not None
    try:
        cluster = TempCluster(bindir)
    except (OSError, RuntimeError) as exc:
        unavailable(f"cannot prepare a throwaway PostgreSQL cluster: {exc}")
    try:
        cluster.start()
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        cluster.stop()
        unavailable(f"cannot start a throwaway PostgreSQL cluster: {exc}")
    try:
        yield PgServer(cluster.dsn)
    finally:
        cluster.stop()


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> Iterator[str]:
    """A DSN whose ``search_path`` is a fresh schema, dropped after the test."""
    schema = pg_server.new_schema()
    yield pg_server.dsn_for(schema)
    pg_server.drop_schema(schema)
