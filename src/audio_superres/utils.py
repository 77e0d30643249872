"""Small shared helpers: atomic writes, so a killed run never leaves a half-written file."""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from audio_superres.errors import OutputError

_WRITE_PROBLEMS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a file is in the way of a directory",
    errno.EEXIST: "a file is in the way of a directory",
    errno.EISDIR: "a folder is in the way of the file",
}
# the names `atomic_path` gives its temporaries: `.<stem>.<mkstemp's random part>.tmp<suffix>`
_TEMPORARY_NAME = re.compile(r"^\..+\.[a-z0-9_]+\.tmp(\.[^.]+)?$")


def positive_int(value: Any) -> int | None:
    """`value` as a positive whole number, None when it is not one (`four`, 0, -2, 2.5, True):
    what a task setting such as ratio= or sample_rate= must be."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if number > 0 else None


def output_error(path: str | os.PathLike, exc: OSError) -> OSError:
    """An OutputError naming `path` and the problem for the errors a user can fix (disk full,
    read-only, permissions, a file where a folder should be); `exc` itself for any other."""
    problem = _WRITE_PROBLEMS.get(exc.errno or -1)
    if problem is None:
        return exc
    err = OutputError(f"{path}: cannot write ({problem}: {exc.strerror or exc})")
    err.errno = exc.errno
    return err


def _reraise(path: str | os.PathLike, exc: OSError) -> NoReturn:
    err = output_error(path, exc)
    if err is exc:
        raise exc
    raise err from exc


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create `path` and check that a file can be written in it, before hours of work depend on
    it (a read-only or full output folder should fail at the start, not at the first save)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        _reraise(path, exc)
    return path


def _file_mode() -> int:
    """The mode a plain `open(path, "w")` would give: 0o666 less the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The temporary name keeps the suffix of `path`, so writers that infer the format from the
    suffix (soundfile, matplotlib) still work. A failed write (disk full, ...) leaves the old
    file as it was and no temporary behind, and raises an OutputError naming `path`. The file
    gets the usual permissions (umask), not mkstemp's owner-only 0600, so results stay readable
    by the group on shared machines.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent
        )
    except OSError as exc:
        _reraise(path, exc)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _file_mode())
        os.replace(tmp_path, path)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        _reraise(path, exc)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def is_atomic_temporary(path: str | os.PathLike) -> bool:
    """Whether `path` has the name of an `atomic_path` temporary (hidden, `.tmp` before the
    suffix): what a killed write leaves behind."""
    return bool(_TEMPORARY_NAME.match(Path(path).name))


def remove_atomic_temporaries(
    folder: str | os.PathLike, suffixes: tuple[str, ...] | None = None
) -> list[Path]:
    """Delete the temporaries a killed write left in `folder` (not below it): regular files
    whose name is an `atomic_path` temporary's (`is_atomic_temporary`), and nothing else;
    only those ending in one of `suffixes` when given. Returns what was removed.

    Call it at the start of a run that writes into `folder`, before anything of its own is in
    flight there (two runs writing into one folder at once are not supported)."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:  # missing or unreadable: nothing of ours to remove
        return removed
    for path in sorted(entries):
        if not is_atomic_temporary(path) or path.is_symlink() or not path.is_file():
            continue
        if suffixes is not None and path.suffix.lower() not in suffixes:
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Call `writer(tmp_path)` and rename the result onto `path`."""
    with atomic_path(path) as tmp:
        writer(tmp)
