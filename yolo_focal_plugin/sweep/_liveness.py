"""Which process is alive, and the cross-process lock around claims of a SQLite study.

A sweep records in each running trial the host, boot id, pid and the pid's start time of the
worker training it. Another worker on the same machine compares them with ``/proc`` to tell a dead
worker (its pid is gone, or reused by a process that started later) from a live one, without
waiting for Optuna's heartbeat grace period. Linux-only details degrade to "unknown" elsewhere.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Optional

__all__ = ["boot_id", "proc_start", "pid_alive", "ClaimLock"]


def boot_id() -> str:
    """This boot's id (changes at every reboot, so a pid from before a reboot is never "alive"); "" if unknown."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def proc_start(pid: int) -> Optional[str]:
    """The start time of process ``pid`` in clock ticks since boot (tells a reused pid apart); None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists on this machine (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ClaimLock:
    """Cross-process lock for SQLite studies (re-entrant within a process).

    Optuna claims a queued trial with ``SELECT ... FOR UPDATE`` + ``UPDATE``. PostgreSQL locks the
    row; SQLite ignores ``FOR UPDATE`` and pysqlite runs the ``SELECT`` outside a transaction, so
    two processes sharing one SQLite file can both claim the same trial (seen in the tests). An
    ``flock`` on ``<db>.lock`` around claims and recovery closes that gap; SQLite studies live on
    one machine anyway. Other storages need no lock.
    """

    def __init__(self, path: Optional[Path]) -> None:
        self.path = path
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._file: Any = None

    def __enter__(self) -> "ClaimLock":
        self._thread_lock.acquire()
        if self.path is not None and self._depth == 0:
            import fcntl

            self._file = open(self.path, "a+")
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
        self._depth += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        self._depth -= 1
        if self._file is not None and self._depth == 0:
            import fcntl

            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        self._thread_lock.release()
