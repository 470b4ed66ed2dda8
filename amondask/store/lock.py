"""One writer per workspace: an exclusive lock that names its holder.

    with workspace_lock(workspace, command="amondask run q.smi"):
        ...  # stages that append to the workspace

On a local directory ``<dir>/<name>`` the lock is ``fcntl.flock`` on the hidden file
``<dir>/.<name>.lock`` beside it (not inside: Zarr warns about files it does not know). The kernel
drops it when the holding process ends, however it ends (SIGKILL, OOM killer, power loss of a
client on NFS once the server notices), so a dead holder never blocks the next run: the file
remains but is not locked. While locked, the file holds the holder as JSON (host, pid, command,
since) and a second run waits up to ``amondask.workspace.lock-timeout-s`` seconds (default 0:
fail at once) and then fails with a :class:`~amondask.errors.WorkspaceLockedError` that names
the holder.

The lock is re-entrant within one process (``run`` takes it, then ``extract`` inside it takes it
again). Dask workers never take it: they write only their own staging subgroups, and the client
that holds the lock merges them.

fsspec URLs (``s3://``, ``gs://``, ...) and in-memory stores are not locked: object stores have
no atomic lock primitive that every backend supports. There, run one writer at a time (a
scheduler job dependency, or one driver process); :func:`workspace_lock` says so once per run
as a warning.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import socket
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from amondask import config
from amondask.errors import WorkspaceError

LOCK_SUFFIX = ".lock"
POLL_SECONDS = 0.2

_held: dict[str, list[Any]] = {}  # lock path -> [open file, depth]
_guard = threading.Lock()


class WorkspaceLockedError(WorkspaceError):
    """Another process holds the workspace's lock."""


def lock_path(workspace: Any) -> Path | None:
    """The lock file of a workspace on a local directory, or None (URL or in-memory store)."""
    spec = getattr(workspace, "spec", workspace)
    if isinstance(spec, Path):
        spec = str(spec)
    if not isinstance(spec, str):
        return None
    if spec.startswith("file://"):
        spec = spec[len("file://") :]
    if "://" in spec:
        return None
    directory = Path(spec).resolve()
    return directory.parent / f".{directory.name}{LOCK_SUFFIX}"


def holder_info(path: Path) -> dict[str, Any]:
    """The holder recorded in a lock file ({} when empty, unreadable or not JSON)."""
    try:
        text = path.read_text()
        return json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}


def describe_holder(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process (it has not yet written its name)"
    return (
        f"pid {holder.get('pid')} on host {holder.get('host')} running "
        f"{holder.get('command')!r} since {holder.get('since')}"
    )


def _current_command() -> str:
    return " ".join(os.path.basename(a) if k == 0 else a for k, a in enumerate(sys.argv)) or "?"


def _try_flock(handle: Any, path: Path) -> bool:
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise WorkspaceError(
            f"cannot lock {path} ({exc.strerror}): the file system does not support locks; "
            "make sure no other amondask run writes this workspace and set "
            "amondask.workspace.lock: false (AMONDASK_WORKSPACE__LOCK=false)"
        ) from exc


def _open_lock_file(path: Path) -> Any:
    try:
        return open(path, "a+")
    except PermissionError as exc:
        raise WorkspaceError(
            f"cannot create the lock file {path} ({exc.strerror}): the directory "
            f"{path.parent} is not writable; check its permissions or mount"
        ) from exc
    except OSError as exc:
        raise WorkspaceError(
            f"cannot create the lock file {path} ({exc.strerror}); check that the workspace "
            "directory exists and is writable"
        ) from exc


def _locked_directory(path: Path) -> Path:
    """The workspace directory a lock file belongs to."""
    return path.parent / path.name[1 : -len(LOCK_SUFFIX)]


def _check_writable(path: Path) -> None:
    """Refuse a workspace directory this process cannot write (read-only mount, permissions)."""
    directory = _locked_directory(path)
    if directory.is_dir() and not os.access(directory, os.W_OK):
        raise WorkspaceError(
            f"workspace {directory} is read-only for this process (permissions or a read-only "
            "mount): nothing was written. Make it writable, or copy it to a writable place; "
            "`amondask info` and `amondask verify` read it as it is"
        )


@contextlib.contextmanager
def workspace_lock(
    workspace: Any, *, command: str | None = None, timeout_s: float | None = None
) -> Iterator[dict[str, Any] | None]:
    """Hold the workspace's exclusive writer lock for the ``with`` block; yields the holder
    record written to the lock file (None when the workspace cannot be locked: URL, memory).

    ``timeout_s``: seconds to wait for another holder (None: ``workspace.lock-timeout-s``);
    then raises WorkspaceLockedError naming the holder (host, pid, command, since).
    """
    path = lock_path(workspace)
    if path is None or not config.get("workspace.lock"):
        spec = getattr(workspace, "spec", workspace)
        # memory:// and store objects live in one process: nothing to warn about
        if path is None and isinstance(spec, str) and not spec.startswith("memory://"):
            warnings.warn(
                f"workspace {spec} is not on a local file system: it is not locked; run one "
                "writer at a time on it",
                stacklevel=3,
            )
        yield None
        return
    _check_writable(path)
    key = str(path)
    with _guard:
        entry = _held.get(key)
        if entry is not None:
            entry[1] += 1
    if entry is not None:
        try:
            yield holder_info(path)
        finally:
            with _guard:
                entry[1] -= 1
        return
    timeout_s = float(config.get("workspace.lock-timeout-s", timeout_s))
    handle = _open_lock_file(path)
    try:
        deadline = time.monotonic() + max(0.0, timeout_s)
        while not _try_flock(handle, path):
            if time.monotonic() >= deadline:
                holder = holder_info(path)
                waited = f" (waited {timeout_s:g} s)" if timeout_s > 0 else ""
                raise WorkspaceLockedError(
                    f"workspace {_locked_directory(path)} is in use by "
                    f"{describe_holder(holder)}{waited}; "
                    "wait for that run to finish, or set amondask.workspace.lock-timeout-s "
                    "(AMONDASK_WORKSPACE__LOCK_TIMEOUT_S) to wait for it. The lock is released "
                    "when its holder exits, however it exits"
                )
            time.sleep(POLL_SECONDS)
        holder = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "command": command or _current_command(),
            "since": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(holder))
        handle.flush()
        with _guard:
            _held[key] = [handle, 1]
        try:
            yield holder
        finally:
            with _guard:
                _held.pop(key, None)
            with contextlib.suppress(OSError):
                handle.seek(0)
                handle.truncate()  # released: no holder to name
                handle.flush()
    finally:
        handle.close()  # closing the descriptor releases the flock
