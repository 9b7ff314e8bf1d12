"""`fbproxy backup`: a consistent copy of the SQLite store while fbproxy runs.

SQLite's online backup API copies the database a few pages a step. The source
connection holds one read transaction from before the first page to after the
last, so the copy is the database as of that moment, whatever the server
commits meanwhile. Without it, SQLite restarts a copy from its first page after
every write by another connection, and a busy server could keep it from ever
finishing. In WAL mode (the store's, see schema.py) a reader blocks no writer:
the server keeps syncing and booking throughout; it only cannot checkpoint the
WAL past the copy's snapshot until the copy ends, so the WAL grows meanwhile.
The pause between steps spreads the copy's reads out so that they do not crowd
the server's own disk reads and writes.

The copy goes to a temporary file next to the target (mode 0600: the data is
personal), is checked, turned into one self-contained file (a rollback journal,
no WAL beside it), fsynced, and only then moved into place, so a crash never
leaves half a backup under the target's name. Plain sqlite3, blocking: the
command runs it directly; async code would hand it to a thread.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from server.errors import StoreError

PAGES_PER_STEP = 256  # 1 MiB a step with SQLite's default 4 KiB pages
PAUSE_SECONDS = 0.005
_SIDE_FILES = ("-journal", "-wal", "-shm")


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int  # bytes
    schema_version: int  # PRAGMA user_version: how many migrations the copy has


def backup_sqlite(database: Path, target: Path, *, force: bool = False,
                  pages_per_step: int = PAGES_PER_STEP, pause: float = PAUSE_SECONDS,
                  sleep: Callable[[float], None] = time.sleep) -> BackupResult:
    """Copy ``database`` to ``target`` consistently, also while fbproxy writes to it.

    ``force`` replaces an existing ``target``. ``sleep(pause)`` runs between two
    steps (tests pass their own to interleave writes). StoreError says what failed.
    """
    _check_paths(database, target, force=force)
    temporary = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
    try:
        os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.chmod(temporary, 0o600)  # whatever the umask
        version = _copy(database, temporary, pages_per_step, pause, sleep)
        _fsync(temporary)
        _move_into_place(temporary, target, force=force)
        _fsync(target.parent)  # the rename itself
    except OSError as exc:
        raise StoreError(f"cannot write the backup {target}: {exc.strerror or exc}") from exc
    finally:
        for name in (temporary, *(Path(f"{temporary}{side}") for side in _SIDE_FILES)):
            name.unlink(missing_ok=True)
    return BackupResult(path=target, size=target.stat().st_size, schema_version=version)


def _check_paths(database: Path, target: Path, *, force: bool) -> None:
    if not database.is_file():
        raise StoreError(f"no database at {database} (fbproxy creates it when it first runs)")
    if target.is_dir():
        raise StoreError(f"{target} is a folder; name the backup file in it")
    if not target.parent.is_dir():
        raise StoreError(f"cannot write the backup {target}: the folder {target.parent} "
                         "does not exist")
    if target.exists() and target.samefile(database):
        raise StoreError(f"{target} is the database itself; name another file")
    if target.exists() and not force:
        raise StoreError(f"{target} exists; pass --force to replace it")


def _copy(database: Path, copy_path: Path, pages_per_step: int, pause: float,
          sleep: Callable[[float], None]) -> int:
    """The backup itself; the copy's schema version."""

    def between_steps(status: int, remaining: int, total: int) -> None:
        if remaining:
            sleep(pause)

    with contextlib.ExitStack() as connections:
        try:
            source = connections.enter_context(
                contextlib.closing(sqlite3.connect(database, isolation_level=None)))
            copy = connections.enter_context(
                contextlib.closing(sqlite3.connect(copy_path, isolation_level=None)))
            source.execute("PRAGMA busy_timeout = 5000")
            source.execute("PRAGMA query_only = ON")
            # The snapshot every page is read from: it begins with the first read.
            source.execute("BEGIN")
            source.execute("SELECT count(*) FROM sqlite_schema").fetchone()
            source.backup(copy, pages=pages_per_step, progress=between_steps)
            source.execute("COMMIT")
            copy.execute("PRAGMA journal_mode = DELETE")
            problems = [row[0] for row in copy.execute("PRAGMA quick_check")]
            version = int(copy.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as exc:
            raise StoreError(f"cannot back up {database}: {exc}") from exc
    if problems != ["ok"]:
        raise StoreError(f"the copy of {database} fails its check: {'; '.join(problems)}")
    return version


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _move_into_place(temporary: Path, target: Path, *, force: bool) -> None:
    if force:
        os.replace(temporary, target)
        return
    # link, not rename: it fails if the target appeared since the check, never
    # replacing a file the user did not ask to replace.
    try:
        os.link(temporary, target)
    except FileExistsError:
        raise StoreError(f"{target} exists; pass --force to replace it") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        # A file system without hard links: check, then rename.
        if target.exists():
            raise StoreError(f"{target} exists; pass --force to replace it") from None
        os.replace(temporary, target)
