"""File and process helpers that every pixeldcn package shares (public API).

- :func:`write_bytes_atomic` / :func:`save_model_atomic`: a reader (a polling server) sees the old
  file or the new one, never a partial one. Files follow the umask like any other tool's output
  (a server running as another user can read them); pass ``private=True`` for files that must
  stay 0600 (keys, logs).
- :func:`pid_alive`: whether a process still runs (for cleaning what dead launchers left).
- :func:`check_name`: a name that will become a file or folder name.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import onnx

from ._errors import SpecError

__all__ = [
    "check_name",
    "current_umask",
    "fsync_dir",
    "pid_alive",
    "save_model_atomic",
    "write_bytes_atomic",
]

_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]+")
MAX_NAME_LENGTH = 128


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (``/proc/self/status``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # pragma: no cover - not Linux: read it the racy way
    os.umask(mask)  # pragma: no cover
    return mask  # pragma: no cover


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or a new entry in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(
    path: str | os.PathLike[str], data: bytes, *, private: bool = False
) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same folder, fsync, then rename.

    A reader never sees a partial file: it sees the old one or the new one. The file gets mode
    ``0o666 & ~umask`` (``0o600`` when ``private``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o600 if private else 0o666 & ~current_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def save_model_atomic(model: onnx.ModelProto, path: str | os.PathLike[str]) -> Path:
    """Serialise an in-memory (< 2 GB) model to ``path`` atomically (mode follows the umask)."""
    return write_bytes_atomic(path, model.SerializeToString())


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (someone else's process counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_name(name: object, *, field: str = "name") -> str:
    """Return ``name`` if it is safe as one file or folder name on every system, else raise.

    Allowed: letters, digits, ``_``, ``-``, ``.``; 1 to 128 characters; no leading dot (hidden
    files, ``.`` and ``..``). Control characters, separators and spaces are refused.

    Raises:
        SpecError: naming ``field``, the value and what is allowed.
    """
    if not isinstance(name, str):
        raise SpecError(f"{field}={name!r}; expected a str")
    if not name:
        raise SpecError(f"{field}='' is empty; expected 1 to {MAX_NAME_LENGTH} characters")
    if len(name) > MAX_NAME_LENGTH:
        raise SpecError(
            f"{field} has {len(name)} characters; expected at most {MAX_NAME_LENGTH}"
        )
    if not _NAME_RE.fullmatch(name):
        bad = sorted({c for c in name if not _NAME_RE.fullmatch(c)})
        raise SpecError(
            f"{field}={name!r} contains {''.join(bad)!r}; expected only letters, digits, "
            "'_', '-', '.'"
        )
    if name.startswith("."):
        raise SpecError(f"{field}={name!r} starts with '.'; expected a visible name")
    return name
