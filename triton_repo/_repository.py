"""Write an ONNX model into a Triton model repository, atomically.

Layout written for a model ``name``::

    <repo_dir>/<name>/config.pbtxt          production flavour (ONNX Runtime backend)
    <repo_dir>/<name>/configs/local.pbtxt   local flavour (Python backend, CPU)
    <repo_dir>/<name>/<version>/model.onnx  (+ its external data file when kept)
    <repo_dir>/<name>/<version>/model.py    the Python-backend runner
    <repo_dir>/<name>/<version>/__pycache__ model.py compiled (hash-checked) for this Python

A server polling the repository must never see half a version. A version is staged in a hidden
folder inside the model's folder (same file system; Triton skips names that are not numbers),
every file and folder is fsync'ed, and the staged folder is renamed to its number in one
``os.rename``. A brand-new model is staged whole and renamed into the repository the same way.
Configs are replaced with temp file + ``os.replace``, and only when their text changes (a config
change makes Triton reload every version of the model). ``model.py`` is compiled into the staged
version: otherwise the backend stub (which ignores PYTHONDONTWRITEBYTECODE) writes ``__pycache__``
into the live version folder on first load, and the polling server reloads the model for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import pathlib
import py_compile
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator, Mapping

from pixeldcn_core.io import write_bytes_atomic

from . import _config
from ._errors import ConfigError, ModelNameError, OptionsKeywordError, RepositoryError
from ._onnx_io import LoadedModel, load_model

__all__ = [
    "LOCAL_CONFIG_NAME",
    "MODEL_FILENAME",
    "RUNNER_FILENAME",
    "list_versions",
    "validate_model_name",
    "write_repository",
]

MODEL_FILENAME = "model.onnx"
RUNNER_FILENAME = "model.py"
#: The local flavour's config name, for ``tritonserver --model-config-name``.
LOCAL_CONFIG_NAME = "local"
MAX_NAME_LENGTH = 128

_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]+")
_RUNNER_SOURCE = pathlib.Path(__file__).with_name("_backend_model.py")
_STAGING_PREFIX = ".staging-"
_TRASH_PREFIX = ".trash-"
_CHUNK = 8 << 20


def validate_model_name(name: object) -> str:
    """Return ``name`` if Triton and every file system accept it as a model folder, else raise.

    Allowed: letters, digits, ``_``, ``-``, ``.``; not empty, no leading dot (hidden, and ``.``
    / ``..``), at most :data:`MAX_NAME_LENGTH` characters.
    """
    if not isinstance(name, str):
        raise ModelNameError(f"name={name!r}; expected a str")
    if not name:
        raise ModelNameError("name='' is empty; expected 1 to 128 characters")
    if len(name) > MAX_NAME_LENGTH:
        raise ModelNameError(f"name has {len(name)} characters; expected at most {MAX_NAME_LENGTH}")
    if not _NAME_RE.fullmatch(name):
        bad = sorted({c for c in name if not _NAME_RE.fullmatch(c)})
        raise ModelNameError(
            f"name={name!r} contains {''.join(bad)!r}; expected only letters, digits, '_', '-', '.'"
        )
    if name.startswith("."):
        raise ModelNameError(f"name={name!r} starts with '.'; Triton ignores hidden folders")
    return name


def list_versions(model_dir: str | os.PathLike[str]) -> list[int]:
    """The version numbers present in a model folder, ascending."""
    path = pathlib.Path(model_dir)
    if not path.is_dir():
        return []
    return sorted(
        int(entry.name)
        for entry in path.iterdir()
        if entry.is_dir()
        and entry.name.isdigit()
        and entry.name == str(int(entry.name))
        and int(entry.name) > 0
    )


# ------------------------------------------------------------------------- durable file writes


def _fsync_dir(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durable(path: pathlib.Path, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _copy_durable(src: pathlib.Path, dst: pathlib.Path) -> None:
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        while chunk := fin.read(_CHUNK):
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())


def _replace_durable(path: pathlib.Path, text: str) -> bool:
    """Atomically make ``path`` hold ``text``; return whether it changed."""
    data = text.encode("utf-8")
    if path.is_file() and path.read_bytes() == data:
        return False
    write_bytes_atomic(path, data)  # temp file + fsync + rename + fsync of the folder
    return True


# -------------------------------------------------------------------------------- staging


def _staging_tag() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_staging(parent: pathlib.Path) -> None:
    """Remove staging folders left by writers on this host that died (SIGKILL, power loss)."""
    host = socket.gethostname()
    for entry in parent.glob(f"{_STAGING_PREFIX}*"):
        rest = entry.name[len(_STAGING_PREFIX) :]
        # .staging-<host>-<pid>-<random>[...]; the host may contain '-'.
        if not rest.startswith(host + "-"):
            continue
        pid_text = rest[len(host) + 1 :].split("-", 1)[0]
        if pid_text.isdigit() and not _pid_alive(int(pid_text)):
            shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def _staging_dir(parent: pathlib.Path, label: str) -> Iterator[pathlib.Path]:
    """A hidden temp folder in ``parent``, removed unless the caller renamed it away."""
    path = pathlib.Path(
        tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{_staging_tag()}", suffix=f"-{label}", dir=parent)
    )
    try:
        yield path
    finally:
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)


def _fill_version_dir(version_dir: pathlib.Path, model: LoadedModel) -> None:
    """Write ``model.onnx`` (+ data files) and ``model.py`` into ``version_dir``, durably."""
    if model.data_files:  # keep the model's bytes and its data files as they are
        _copy_durable(model.source, version_dir / MODEL_FILENAME)
        for location in model.data_files:
            dst = version_dir / location
            dst.parent.mkdir(parents=True, exist_ok=True)
            _copy_durable(model.source.parent / location, dst)
            if dst.parent != version_dir:
                _fsync_dir(dst.parent)
    else:
        _write_durable(version_dir / MODEL_FILENAME, model.proto.SerializeToString())
    _write_durable(version_dir / RUNNER_FILENAME, _RUNNER_SOURCE.read_bytes())
    _compile_runner(version_dir / RUNNER_FILENAME)
    _fsync_dir(version_dir)


def _compile_runner(source: pathlib.Path) -> None:
    """Write the runner's bytecode where the stub's import looks for it, durably.

    Hash-checked, so it stays valid when the folder is copied (mtimes change) and is ignored,
    not trusted, if the source ever differs.
    """
    import importlib.util

    cfile = pathlib.Path(importlib.util.cache_from_source(str(source)))
    py_compile.compile(
        str(source), cfile=str(cfile), doraise=True,
        invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
    )
    with open(cfile, "rb") as f:
        os.fsync(f.fileno())
    _fsync_dir(cfile.parent)


def _rename_noreplace(src: pathlib.Path, dst: pathlib.Path) -> bool:
    """Rename a folder unless ``dst`` exists; return False when it does."""
    if dst.exists():
        return False
    try:
        os.rename(src, dst)  # fails with ENOTEMPTY/EEXIST when dst is a non-empty folder
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False
        raise
    return True


def _prune(model_dir: pathlib.Path, keep: int) -> list[int]:
    """Remove all but the newest ``keep`` versions; each vanishes in one rename."""
    versions = list_versions(model_dir)
    removed = versions[: max(0, len(versions) - keep)]
    for version in removed:
        trash = model_dir / f"{_TRASH_PREFIX}{_staging_tag()}{version}"
        os.rename(model_dir / str(version), trash)
        shutil.rmtree(trash, ignore_errors=True)
    if removed:
        _fsync_dir(model_dir)
    return removed


# ------------------------------------------------------------------------------ public API


#: ``ServingOptions`` fields that ``write_repository`` took as keywords before 0.2.
_MOVED_KEYWORDS = frozenset(f.name for f in dataclasses.fields(_config.ServingOptions))


def write_repository(
    repo_dir: str | os.PathLike[str],
    name: str,
    onnx_path: str | os.PathLike[str],
    *,
    options: _config.ServingOptions | None = None,
    version: int | None = None,
    keep_versions: int | None = None,
    external_data: str = "auto",
    **moved: object,
) -> pathlib.Path:
    """Write ``onnx_path`` as a new version of model ``name`` in the repository ``repo_dir``.

    Writes ``<name>/<version>/model.onnx`` and ``model.py``, the production ``config.pbtxt``
    and the local ``configs/local.pbtxt``; inputs, outputs, data types and dims come from the
    model (dynamic dims become -1; the batch dim is dropped when ``max_batch_size > 0``).

    Args:
        repo_dir: the model repository (created if missing).
        name: model name and folder; letters, digits, ``_``, ``-``, ``.``.
        onnx_path: the exported model. External data beside it (``model.onnx.data``) is
            inlined when the model stays under 2 GB, else copied with it (see ``external_data``).
        options: how the model is served (batching, instances, TensorRT, warm-up, version
            policy, request limits): a :class:`ServingOptions`, documented there; default
            ``ServingOptions()``.
        version: version number; ``None`` takes the largest existing version + 1.
        keep_versions: remove older version folders, keeping the newest ``keep_versions``
            (at least ``options.num_versions``); ``None`` keeps them all (see :func:`rollback`).
        external_data: ``"auto"``, ``"inline"`` or ``"keep"`` (see :func:`load_model`).

    Returns:
        The new version folder ``<repo_dir>/<name>/<version>``.

    Raises:
        ConfigError: ``options`` is not a ``ServingOptions``, a serving option was passed as a
            keyword (the pre-0.2 call; the error shows the new one), or the model's dims do not
            fit the options.
        ModelNameError: ``name`` is not a valid model name.
        RepositoryError: the model is invalid, its external data is missing or outside its
            folder, or ``version`` exists already.
    """
    if moved:
        raise _moved_keywords_error(moved)
    if options is None:
        options = _config.ServingOptions()
    if not isinstance(options, _config.ServingOptions):
        raise ConfigError(
            f"options is a {type(options).__name__}; expected triton_repo.ServingOptions(...)"
        )
    validate_model_name(name)
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
        raise RepositoryError(f"version={version!r}; expected an integer >= 1 or None")
    num_versions = options.num_versions
    if keep_versions is not None and (
        isinstance(keep_versions, bool) or not isinstance(keep_versions, int) or keep_versions < num_versions
    ):
        raise RepositoryError(
            f"keep_versions={keep_versions!r}; expected None or an integer >= num_versions "
            f"({num_versions}), so that no served version is deleted"
        )

    model = load_model(onnx_path, external_data=external_data)
    production = _config.config_to_text(_config.production_config(name, model.signature, options))
    local = _config.config_to_text(_config.local_config(name, model.signature, options))

    repo = pathlib.Path(repo_dir)
    repo.mkdir(parents=True, exist_ok=True)
    model_dir = repo / name

    if not model_dir.exists():
        created = _create_model(repo, model_dir, model, production, local, version or 1)
        if created is not None:
            return created
    return _add_version(model_dir, model, production, local, version, keep_versions)


def _moved_keywords_error(moved: Mapping[str, object]) -> ConfigError:
    """The error for ``write_repository(..., max_batch_size=4)``: shows the call to make instead."""
    serving = sorted(k for k in moved if k in _MOVED_KEYWORDS)
    unknown = sorted(k for k in moved if k not in _MOVED_KEYWORDS)
    if unknown:
        return OptionsKeywordError(
            f"write_repository() got unexpected keyword argument(s) {unknown}; expected options=, "
            "version=, keep_versions=, external_data="
        )
    args = ", ".join(f"{k}={moved[k]!r}" for k in serving)
    return OptionsKeywordError(
        f"write_repository() no longer takes serving options as keywords (got {serving}); "
        f"pass them as options: write_repository(repo_dir, name, onnx_path, "
        f"options=ServingOptions({args}))"
    )


def _create_model(
    repo: pathlib.Path,
    model_dir: pathlib.Path,
    model: LoadedModel,
    production: str,
    local: str,
    version: int,
) -> pathlib.Path | None:
    """Stage a whole new model folder and rename it in; None when another writer won."""
    _remove_stale_staging(repo)
    with _staging_dir(repo, model_dir.name) as staged:
        version_dir = staged / str(version)
        version_dir.mkdir()
        _fill_version_dir(version_dir, model)
        _replace_durable(staged / "configs" / f"{LOCAL_CONFIG_NAME}.pbtxt", local)
        _replace_durable(staged / "config.pbtxt", production)
        _fsync_dir(staged)
        if not _rename_noreplace(staged, model_dir):
            return None
    _fsync_dir(repo)
    return model_dir / str(version)


def _add_version(
    model_dir: pathlib.Path,
    model: LoadedModel,
    production: str,
    local: str,
    version: int | None,
    keep_versions: int | None,
) -> pathlib.Path:
    """Stage one version in the model folder, rename it to its number, then update configs."""
    if not model_dir.is_dir():
        raise RepositoryError(f"{model_dir.name!r} exists in the repository but is not a folder")
    _remove_stale_staging(model_dir)
    with _staging_dir(model_dir, "version") as staged:
        _fill_version_dir(staged, model)
        _fsync_dir(model_dir)
        while True:
            number = version if version is not None else max(list_versions(model_dir), default=0) + 1
            target = model_dir / str(number)
            if _rename_noreplace(staged, target):
                break
            if version is not None:
                raise RepositoryError(
                    f"version={version} of model {model_dir.name!r} exists already; pass "
                    "version=None for the next number"
                )
    _fsync_dir(model_dir)
    _replace_durable(model_dir / "configs" / f"{LOCAL_CONFIG_NAME}.pbtxt", local)
    _replace_durable(model_dir / "config.pbtxt", production)
    if keep_versions is not None:
        _prune(model_dir, keep_versions)
    return target
