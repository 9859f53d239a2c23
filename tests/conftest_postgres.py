"""A real, throwaway PostgreSQL server for the sweep's distributed-storage test.

``postgres_url`` starts Debian's ``postgres`` (``initdb`` + ``pg_ctl``) on a free loopback port,
with its data and socket in a temporary directory, and stops and deletes it after the session.
initdb refuses to run as root: as root the server runs as the ``postgres`` system user (created by
the Debian package) through ``runuser``. Skips (with the reason) when no server binaries exist:
``bash scripts/system-deps.sh`` installs them (``make test`` runs it).

Use from a test module: ``from conftest_postgres import postgres_url  # noqa: F401``.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

DB = "sweeps"


def pg_bindir() -> Optional[Path]:
    def version(path: str) -> tuple:
        part = Path(path).parts[-3]
        return tuple(int(x) for x in part.split(".") if x.isdigit())

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=version)
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("pg_ctl")
    return Path(found).resolve().parent if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(cmd: List[str], user: Optional[str]) -> List[str]:
    if user is None:
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--", *cmd]
    import shlex

    return ["su", user, "-s", "/bin/sh", "-c", " ".join(shlex.quote(c) for c in cmd)]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (run: bash scripts/system-deps.sh)")
    user: Optional[str] = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run initdb as")
        user = "postgres"
    base = Path(tempfile.mkdtemp(prefix="yolo-focal-pg-"))
    data = base / "data"
    log = base / "server.log"
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    os.chmod(base, 0o700)
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    run = lambda cmd: subprocess.run(_as_server_user(cmd, user), check=True, capture_output=True, text=True, env=env, cwd=str(base))  # noqa: E731
    try:
        run([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
        port = 0
        for attempt in range(3):
            port = _free_port()
            opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
            try:
                run([str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(log), "-w", "-t", "60", "start"])
                break
            except subprocess.CalledProcessError:
                if attempt == 2:
                    raise
                time.sleep(1)
        run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", DB])
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or "") + (log.read_text() if log.exists() else "")
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {' '.join(exc.cmd)}\n{detail[-2000:]}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/{DB}"
    finally:
        subprocess.run(_as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], user),
                       capture_output=True, env=env, cwd=str(base))
        shutil.rmtree(base, ignore_errors=True)
