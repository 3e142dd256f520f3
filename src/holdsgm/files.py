"""Writing files so that a reader never sees half of one: the one atomic-write helper of the package.

:func:`atomic_write` writes to a temporary file in the same folder, flushes and fsyncs it, renames it over
the target (``os.replace``) and fsyncs the folder: the target holds either its old content or all of the
new. Checkpoints, configs, reports, the classifier cache and the speech corpus's metadata all use it.
:func:`writable_dir` makes a folder and checks it can be written before any work is done.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """fsync a folder (so a rename in it is durable); a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write(path, data: bytes, hook: Callable[[str], None] | None = None, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` so that ``path`` holds either its old content or all of ``data``.

    ``hook(point)``, if given, is called with ``"partial"`` once half of the data is written and flushed to
    the temporary file, and with ``"written"`` after the rename (the crash-safety tests stop the process
    there). ``mode``: the file's permissions (default: the temporary file's, i.e. the umask's)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            half = len(data) // 2
            f.write(data[:half])
            if hook is not None:
                f.flush()
                hook("partial")
            f.write(data[half:])
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    fsync_dir(path.parent)
    if hook is not None:
        hook("written")
    return path


def writable_dir(path, what: str = "output folder") -> Path:
    """Create the folder ``path`` (and its parents) and check that a file can be written in it; OSError
    ``cannot write to <what> <path>: <reason>`` otherwise."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OSError(f"cannot write to {what} {path}: {e.strerror or e}") from None
    return path
