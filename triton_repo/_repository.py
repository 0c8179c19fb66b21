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
``os.rename``. A brand-new model is staged whole *outside* the repository, in the hidden sibling
folder ``.<repo name>.pixeldcn-staging`` (Triton lists every folder of the repository root as a
model, hidden ones included), and renamed into it; only when that sibling is on another file
system or cannot be created does the staging fall back to a hidden folder in the repository
root. Leftovers of killed writers are removed by the next write and when a local server starts
(:func:`remove_stale_staging`). :func:`rollback` re-publishes the previous version under a new
number, so that a server always has a complete version to serve.
Configs are replaced with temp file + ``os.replace``, and only when their text changes (a config
change makes Triton reload every version of the model). ``model.py`` is compiled into the staged
version: otherwise the backend stub (which ignores PYTHONDONTWRITEBYTECODE) writes ``__pycache__``
into the live version folder on first load, and the polling server reloads the model for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import pathlib
import py_compile
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator, Mapping

from pixeldcn_core.io import current_umask, fsync_dir, pid_alive, write_bytes_atomic

from . import _config
from ._errors import ConfigError, ModelNameError, OptionsKeywordError, RepositoryError
from ._onnx_io import LoadedModel, load_model

__all__ = [
    "LOCAL_CONFIG_NAME",
    "MODEL_FILENAME",
    "RUNNER_FILENAME",
    "history",
    "list_versions",
    "remove_stale_staging",
    "rollback",
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
_STAGING_SIBLING = ".{}.pixeldcn-staging"
#: Written into a version made by :func:`rollback`: which versions it withdrew.
VERSION_INFO_FILENAME = "pixeldcn-version.json"
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
    fsync_dir(path)


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


def _remove_stale_staging(parent: pathlib.Path) -> None:
    """Remove staging and trash folders left by writers on this host that died (SIGKILL)."""
    host = socket.gethostname()
    for prefix in (_STAGING_PREFIX, _TRASH_PREFIX):
        for entry in parent.glob(f"{prefix}*"):
            rest = entry.name[len(prefix) :]
            # <prefix><host>-<pid>-<random>[...]; the host may contain '-'.
            if not rest.startswith(host + "-"):
                continue
            pid_text = rest[len(host) + 1 :].split("-", 1)[0]
            if pid_text.isdigit() and not pid_alive(int(pid_text)):
                shutil.rmtree(entry, ignore_errors=True)


def _staging_parent(repo: pathlib.Path) -> pathlib.Path:
    """Where a new model is staged: the hidden sibling of the repository when it can be used."""
    sibling = repo.parent / _STAGING_SIBLING.format(repo.name)
    try:
        sibling.mkdir(mode=0o700, exist_ok=True)
        if sibling.stat().st_dev == repo.stat().st_dev and not sibling.is_symlink():
            return sibling
    except OSError:
        pass
    return repo  # another file system, or no right to write there: a hidden folder inside


def remove_stale_staging(repo_dir: str | os.PathLike[str]) -> None:
    """Remove what writers killed on this host left: in the repository root, in each model
    folder and in the staging sibling. Called by every write and when a local server starts."""
    repo = pathlib.Path(repo_dir)
    if not repo.is_dir():
        return
    sibling = repo.parent / _STAGING_SIBLING.format(repo.name)
    for folder in (repo, sibling, *(p for p in repo.iterdir() if p.is_dir() and not p.name.startswith("."))):
        if folder.is_dir():
            _remove_stale_staging(folder)


@contextlib.contextmanager
def _staging_dir(parent: pathlib.Path, label: str) -> Iterator[pathlib.Path]:
    """A hidden temp folder in ``parent``, removed unless the caller renamed it away."""
    path = pathlib.Path(
        tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{_staging_tag()}", suffix=f"-{label}", dir=parent)
    )
    path.chmod(0o777 & ~current_umask())  # mkdtemp makes it 0700; a server may run as another user
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
    parent = _staging_parent(repo)
    if parent != repo:
        _remove_stale_staging(parent)
    with _staging_dir(parent, model_dir.name) as staged:
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


# ---------------------------------------------------------------------------------- rollback


def _version_info(version_dir: pathlib.Path) -> dict:
    """The version's info file, or {} when it is missing or malformed (not a JSON object of the
    expected types: a hand-edited or corrupt file never ends in a traceback)."""
    try:
        info = json.loads((version_dir / VERSION_INFO_FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return {}
    if not isinstance(info, dict):
        return {}
    withdraws = info.get("withdraws", [])
    if not isinstance(withdraws, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in withdraws):
        info = {k: v for k, v in info.items() if k != "withdraws"}
    return info


def history(model_dir: str | os.PathLike[str]) -> list[int]:
    """The versions of a model that count, ascending: every version folder except those a
    later :func:`rollback` withdrew. The last one is the version the model serves."""
    path = pathlib.Path(model_dir)
    versions = list_versions(path)
    withdrawn: set[int] = set()
    for version in versions:
        withdrawn.update(int(v) for v in _version_info(path / str(version)).get("withdraws", []))
    return [v for v in versions if v not in withdrawn]


def _link_or_copy_tree(src: pathlib.Path, dst: pathlib.Path) -> None:
    """Fill the existing folder ``dst`` with ``src``'s files: hard links (version folders never
    change once published), copies where linking fails. Everything fsync'ed."""
    for entry in sorted(src.rglob("*")):
        rel = entry.relative_to(src)
        if rel.name == VERSION_INFO_FILENAME and rel.parent == pathlib.Path("."):
            continue
        target = dst / rel
        if entry.is_dir() and not entry.is_symlink():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(entry, target, follow_symlinks=False)
        except OSError:
            _copy_durable(entry, target)
    for folder in sorted({p.parent for p in dst.rglob("*")} | {dst}, reverse=True):
        _fsync_dir(folder)


def _served_versions_policy(model_dir: pathlib.Path) -> None:
    """Refuse models whose config serves more than the latest version (rollback would leave
    the withdrawn one served)."""
    for path in (model_dir / "config.pbtxt", model_dir / "configs" / f"{LOCAL_CONFIG_NAME}.pbtxt"):
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        config = _config.config_from_text(text)
        policy = config.version_policy
        kind = policy.WhichOneof("policy_choice")
        if kind not in (None, "latest") or (kind == "latest" and policy.latest.num_versions != 1):
            raise RepositoryError(
                f"model {model_dir.name!r} serves version policy {kind or 'latest'} "
                f"({str(policy).strip() or 'default'}) in {path.name}; rollback needs the latest "
                "1 version (ServingOptions(num_versions=1)); remove versions by hand instead"
            )


def rollback(repo_dir: str | os.PathLike[str], name: str) -> pathlib.Path:
    """Serve the previous version of model ``name`` again, safely at any moment.

    The version before the served one (in :func:`history`) is published again under a new,
    higher number (hard links, staged and renamed in like any new version), marked as
    withdrawing the served version and itself. Nothing is deleted, so a server never loses the
    files of a version it serves or is loading: it loads the new number beside the served one
    and switches when it is ready, like for any new version. Calling it again goes one more
    version back.

    Returns:
        The new version folder (its ``pixeldcn-version.json`` names the source version).

    Raises:
        ModelNameError: ``name`` is not a valid model name.
        RepositoryError: the model does not exist, serves more than one version, or has no
            earlier version to go back to.
    """
    validate_model_name(name)
    model_dir = pathlib.Path(repo_dir) / name
    if not model_dir.is_dir():
        raise RepositoryError(f"model {name!r} is not in the repository {str(repo_dir)!r}")
    _served_versions_policy(model_dir)
    _remove_stale_staging(model_dir)
    versions = history(model_dir)
    if len(versions) < 2:
        raise RepositoryError(
            f"model {name!r} has versions {versions} in its history; nothing older to roll back to"
        )
    current, target = versions[-1], versions[-2]
    with _staging_dir(model_dir, "rollback") as staged:
        _link_or_copy_tree(model_dir / str(target), staged)
        info = {"source": target, "withdraws": [current, target]}
        _write_durable(staged / VERSION_INFO_FILENAME, json.dumps(info).encode())
        _fsync_dir(staged)
        while True:
            number = max(list_versions(model_dir), default=0) + 1
            if _rename_noreplace(staged, model_dir / str(number)):
                break
    _fsync_dir(model_dir)
    return model_dir / str(number)
