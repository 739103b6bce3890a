"""Replace a directory artifact all at once, or not at all.

`atomic_directory(target)` yields an empty staging directory beside `target` (same filesystem). On a normal
exit the staged files are fsynced, the optional `validate(staged)` runs, and the staging directory takes the
place of `target` in one step: `renameat2(RENAME_EXCHANGE)` where the kernel offers it (readers never see a
missing target), else two renames (a crash between them leaves the previous artifact at
`<target>.previous-<pid>`). On an exception the staging directory is removed and `target` is untouched; a
killed process leaves `.<name>.staging-<pid>-*`, which the next write of the same target removes.

A directory that exists, is not empty and holds no `marker` file (e.g. `manifest.json`) is never replaced: a
mistyped output path must not delete someone's data.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_STAGING = ".staging-"


class NotReplaceableError(Exception):
    """The target exists and is not an artifact of the kind being written."""


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(directory: Path) -> None:
    """fsync every file directly in `directory`, then the directory itself (its entries)."""
    for path in Path(directory).iterdir():
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    fsync_dir(directory)


def check_replaceable(target: Path, marker: str, what: str) -> None:
    if not target.exists():
        return
    if not target.is_dir():
        raise NotReplaceableError(f"refusing to write the {what} to {target}: it exists and is not a directory")
    if any(target.iterdir()) and not (target / marker).is_file():
        raise NotReplaceableError(
            f"refusing to replace {target}: it is a non-empty directory without {marker} (not an earlier {what})")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically with renameat2(RENAME_EXCHANGE) where the kernel and libc offer it."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def _replace(staged: Path, target: Path) -> None:
    if not target.exists():
        os.rename(staged, target)
    elif _exchange(staged, target):
        shutil.rmtree(staged)  # `staged` now holds the previous artifact
    else:
        previous = target.with_name(f"{target.name}.previous-{os.getpid()}")
        os.rename(target, previous)
        try:
            os.rename(staged, target)
        except OSError:
            os.rename(previous, target)
            raise
        shutil.rmtree(previous)
    fsync_dir(target.parent)


def _remove_stale_staging(target: Path) -> None:
    """Remove staging directories of `target` whose writer (pid in the name) is gone."""
    for candidate in target.parent.glob(f".{target.name}{_STAGING}*"):
        try:
            pid = int(candidate.name.rsplit(_STAGING, 1)[1].split("-", 1)[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(candidate, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            continue


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike, *, marker: str = "manifest.json", what: str = "artifact",
                     validate: Callable[[Path], object] | None = None) -> Iterator[Path]:
    """Yield a staging directory that replaces `target` on success; see the module doc."""
    target = Path(target).absolute()
    check_replaceable(target, marker, what)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(target)
    staged = Path(tempfile.mkdtemp(prefix=f".{target.name}{_STAGING}{os.getpid()}-", dir=target.parent))
    staged.chmod(0o755)  # mkdtemp's 0700 would hide the artifact from a service running as another user
    try:
        yield staged
        fsync_tree(staged)
        if validate is not None:
            validate(staged)
        _replace(staged, target)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
