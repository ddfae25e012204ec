"""Writes that never leave a partial file: the one atomic-write helper of the package.

Every file is written under a temporary name beside its target (``.<name>.<pid>.tmp``,
same filesystem; the writer's pid, so that two writers of one target never share it), flushed to disk, then renamed over the target; on any failure the
temporary file is removed and the error re-raised. A SIGKILL mid-write can leave a
``.tmp`` behind, never a torn target (:func:`remove_stray_tmp` cleans up).
"""
from __future__ import annotations

import errno
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_FAULTS: dict = {}


def inject_disk_full() -> None:
    """Test hook: ``EQUIVOX_FAULT=enospc@N`` makes every write through this module fail
    with ENOSPC once the trainer reaches step N (set by the trainer)."""
    _FAULTS["disk_full"] = True


def check_injected(handle=None) -> None:
    """Raise ENOSPC (after writing a little into ``handle``) when a full disk is injected."""
    if _FAULTS.get("disk_full", False):
        if handle is not None:
            handle.write(b"partial" if "b" in getattr(handle, "mode", "") else "partial")
            handle.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC) + " (injected by EQUIVOX_FAULT)")


def tmp_path(path: Path) -> Path:
    """The temporary name a write of ``path`` by this process goes through:
    ``.<name>.<pid>.tmp`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _writer_alive(path: Path) -> bool:
    """Whether the process that names temporary file ``path`` runs (on this host), other
    than this one."""
    try:
        pid = int(path.name.rsplit(".", 2)[-2])
    except (ValueError, IndexError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@dataclass
class Pending:
    """A write in progress: write ``tmp``; it replaces ``target`` when the block ends
    (``target`` may be set inside the block, e.g. once the content names its format)."""
    tmp: Path
    target: Path


def _fsync(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


@contextmanager
def replacing(path: str | Path, target: Path | None = None):
    """Yield a :class:`Pending` whose ``tmp`` the block writes (by path: HDF5, SQLite,
    ...); on success it is synced and renamed to ``pending.target`` (default ``path``),
    on failure removed."""
    path = Path(path)
    pending = Pending(tmp_path(path), target or path)
    try:
        yield pending
        _fsync(pending.tmp)  # the rename must not reach disk before the data
        os.replace(pending.tmp, pending.target)
    except BaseException:
        try:
            pending.tmp.unlink(missing_ok=True)
        except OSError:  # e.g. a directory in the way: nothing of ours to remove
            pass
        raise


def atomic_write(path: str | Path, write, binary: bool = False) -> None:
    """``write(handle)`` into the temporary file of ``path``, then replace ``path``."""
    with replacing(path) as pending:
        with open(pending.tmp, "wb" if binary else "w", newline=None if binary else "") as handle:
            write(handle)
            check_injected(handle)


@contextmanager
def atomic_write_h5(path: str | Path):
    """An open HDF5 file (``h5py.File``) that replaces ``path`` when the block succeeds
    (:func:`replacing`)."""
    import h5py

    with replacing(path) as pending:
        with h5py.File(pending.tmp, "w") as h5:
            yield h5


def write_json(path: str | Path, data) -> None:
    """``data`` as indented JSON with sorted keys, atomically."""
    atomic_write(Path(path), lambda h: h.write(json.dumps(data, indent=2, sort_keys=True, default=str)))


def remove_stray_tmp(run_dir: Path) -> list[Path]:
    """Delete the temporary files a killed writer left in ``run_dir``, its
    ``checkpoints/`` and ``final/`` (not in ``superseded/``, nor those of a writer still
    running on this host); returns them."""
    removed = []
    for folder in (run_dir, run_dir / "checkpoints", run_dir / "final"):
        for path in folder.glob(".*.tmp") if folder.is_dir() else []:
            if path.is_file() and not _writer_alive(path):
                path.unlink()
                removed.append(path)
    return removed
