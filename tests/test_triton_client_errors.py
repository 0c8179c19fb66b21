"""Client and launcher error paths without a server: refused and silent ports, bad client
arguments, a missing repository or bad port, ``ServerConfig`` validation and the pre-0.3 keyword
call, a missing nvidia-pytriton.
"""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest

import triton_repo

from .repository_helpers import closed_port

# --------------------------------------------------------------- client and launcher errors


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_refused_connection_raise_server_unavailable_error_not_a_timeout(protocol: str) -> None:
    client = triton_repo.Client(f"127.0.0.1:{closed_port()}", "unet", protocol=protocol, timeout=5)
    with pytest.raises(triton_repo.ServerUnavailableError, match="nothing answers at") as info:
        client.infer(np.zeros((1, 3, 4, 4), np.float32))
    assert not isinstance(info.value, TimeoutError)
    assert isinstance(info.value, ConnectionError)
    assert client.is_ready() is False
    with pytest.raises(triton_repo.ServerUnavailableError, match="nothing answered at"):
        client.wait_ready(timeout=0.5)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_server_that_accepts_but_never_answers_raise_server_timeout_error(protocol: str) -> None:
    import socket
    import time

    with socket.socket() as silent:  # listens (the kernel accepts), never reads or answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        client = triton_repo.Client(f"127.0.0.1:{port}", "unet", protocol=protocol, timeout=1)
        started = time.monotonic()
        with pytest.raises(triton_repo.ServerTimeoutError, match="did not answer within 1s") as info:
            client.infer(np.zeros((1, 3, 4, 4), np.float32))
        assert time.monotonic() - started < 10
    assert isinstance(info.value, TimeoutError)
    assert not isinstance(info.value, triton_repo.ServerUnavailableError)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(model="a/b"), triton_repo.ModelNameError, "contains '/'"),
        (
            dict(protocol="ftp"),
            triton_repo.ConfigError,
            r"protocol='ftp'; expected one of \('grpc', 'http'\)",
        ),
        (dict(timeout=0), triton_repo.ConfigError, "timeout=0; expected a positive number"),
    ],
)
def test_client_raise_error_for_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    arguments = {"model": "unet", **kwargs}
    model = arguments.pop("model")
    with pytest.raises(error, match=match):
        triton_repo.Client("127.0.0.1:1", model, **arguments)


def test_launcher_raise_error_for_a_missing_repository_or_a_bad_port(tmp_path: pathlib.Path) -> None:
    with pytest.raises(triton_repo.ServerStartError, match="is not a folder"):
        triton_repo.LocalTritonServer(tmp_path / "nope")
    with pytest.raises(triton_repo.ConfigError, match=r"ServerConfig.http_port=70000; expected a port"):
        triton_repo.LocalTritonServer(tmp_path, triton_repo.ServerConfig(http_port=70000))


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("grpc_port", 0, r"ServerConfig.grpc_port=0; expected a port in \[1, 65535\] or None"),
        ("health_port", True, r"ServerConfig.health_port=True; expected a port in \[0, 65535\]"),
        ("poll_secs", 0, r"ServerConfig.poll_secs=0; expected an integer >= 1"),
        ("ready_timeout", float("nan"), r"ServerConfig.ready_timeout=nan; expected a finite number"),
        ("stop_timeout", -1, r"ServerConfig.stop_timeout=-1; expected a finite number of seconds >= 0"),
        ("exit_timeout", 1.5, r"ServerConfig.exit_timeout=1.5; expected an integer >= 0"),
        ("shm_bytes", 0, r"ServerConfig.shm_bytes=0; expected an integer >= 1"),
        ("max_shm_bytes", 1024, r"ServerConfig.max_shm_bytes=1024; expected None or an integer >= shm_bytes"),
        ("restart_on_crash", "yes", r"ServerConfig.restart_on_crash='yes'; expected True or False"),
        ("watchdog_interval", 0, r"ServerConfig.watchdog_interval=0; expected a finite number of seconds"),
        ("host", None, r"ServerConfig.host=None; expected an address as a str"),
        ("log_path", 3, r"ServerConfig.log_path=3; expected a file path or None"),
    ],
)
def test_server_config_is_validated_on_construction_and_names_the_field(
    field: str, value: object, expected: str
) -> None:
    with pytest.raises(triton_repo.ConfigError, match=expected):
        triton_repo.ServerConfig(**{field: value})


def test_server_config_is_frozen_and_the_old_keyword_call_shows_the_new_one(tmp_path: pathlib.Path) -> None:
    import dataclasses

    config = triton_repo.ServerConfig(log_path=str(tmp_path / "log"), health_port=0)
    assert config.log_path == tmp_path / "log" and isinstance(config.log_path, pathlib.Path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.poll_secs = 2  # type: ignore[misc]
    assert dataclasses.replace(config, http_port=8010).http_port == 8010
    with pytest.raises(triton_repo.OptionsKeywordError, match=(
        r"LocalTritonServer\(\) no longer takes server settings as keywords "
        r"\(got \['http_port', 'poll_secs'\]\); "
        r"pass them as a config: LocalTritonServer\(repo_dir, ServerConfig\(http_port=8000, poll_secs=2\)\)"
    )):  # fmt: skip
        triton_repo.LocalTritonServer(tmp_path, http_port=8000, poll_secs=2)
    with pytest.raises(triton_repo.OptionsKeywordError, match=r"unexpected keyword argument\(s\) \['colour'"):
        triton_repo.LocalTritonServer(tmp_path, colour="red")
    with pytest.raises(TypeError):  # an OptionsKeywordError is a TypeError, as for any bad keyword
        triton_repo.LocalReplicas(tmp_path, 2, ready_timeout=120)
    with pytest.raises(triton_repo.ConfigError, match=r"config is a dict; expected triton_repo.ServerConfig"):
        triton_repo.LocalTritonServer(tmp_path, {"poll_secs": 2})  # type: ignore[arg-type]


def test_launcher_raise_helpful_error_when_nvidia_pytriton_is_missing(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pytriton" else real_find_spec(name, *a)
    )
    with pytest.raises(triton_repo.TritonNotInstalledError, match=r"pip install 'pixeldcn\[triton\]'"):
        triton_repo.LocalTritonServer(tmp_path)
