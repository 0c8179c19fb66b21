"""Model repositories in object storage, against a real S3 API server and the real tritonserver.

The S3 API server is moto's standalone server (``moto[server]``) on a free loopback port; boto3
reaches it through the standard ``AWS_ENDPOINT_URL`` variable, tritonserver through
``s3://127.0.0.1:PORT/bucket/prefix``. No mocks: pushes, listings and deletions go over HTTP.

Parity tolerance: served outputs equal in-process onnxruntime within ATOL = 1e-5 (float32).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import onnx
import pytest

import triton_repo
from triton_repo import _s3, _s3_push, _s3_repository, _supervisor

from .scale_helpers import CREDENTIALS, MotoS3Server, layer_model, reference

ATOL = 1e-5
BUCKET = "pixeldcn-models"
URL = f"s3://{BUCKET}/prod"
SETTLE = 2.0  # > one poll of the test servers (poll_secs=1, ~2 s per S3 poll measured)
CPU = triton_repo.ServingOptions(kind="cpu", max_batch_size=4)
X = np.random.default_rng(7).standard_normal((2, 3, 8, 8), dtype=np.float32)


# ------------------------------------------------------------------------ no server needed


def test_s3_location_rejects_what_triton_cannot_read() -> None:
    assert _s3.S3Location.parse("s3://bucket-1/a/b_c/d.e/") == _s3.S3Location("bucket-1", "a/b_c/d.e")
    with pytest.raises(_s3.S3LocationError, match=r"expected s3://BUCKET/PREFIX"):
        _s3.S3Location.parse("/local/folder")
    with pytest.raises(_s3.S3LocationError, match=r"bucket 'Bad_Bucket'"):
        _s3.S3Location.parse("s3://Bad_Bucket/p")
    with pytest.raises(_s3.S3LocationError, match=r"names an endpoint .*AWS_ENDPOINT_URL"):
        _s3.S3Location.parse("s3://127.0.0.1:9000/bucket/p")
    with pytest.raises(_s3.S3LocationError, match=r"prefix part 'a b'.*\[0-9a-zA-Z._-\]"):
        _s3.S3Location.parse("s3://bucket/a b/c")
    with pytest.raises(_s3.S3LocationError, match=r"prefix part '\.\.'"):
        _s3.S3Location.parse("s3://bucket/a/../c")
    assert issubclass(_s3.S3LocationError, ValueError)


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        (None, "s3://bucket/p/q"),  # AWS itself: no endpoint in the URL
        ("http://127.0.0.1:9000", "s3://127.0.0.1:9000/bucket/p/q"),
        ("https://minio.example:443", "s3://https://minio.example:443/bucket/p/q"),
        ("http://minio.local", "s3://minio.local:80/bucket/p/q"),
    ],
)
def test_triton_url_puts_a_custom_endpoint_inside_the_url(
    monkeypatch: pytest.MonkeyPatch, endpoint: str | None, expected: str
) -> None:
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = _s3.s3_client(endpoint_url=endpoint)
    assert _s3.triton_url("s3://bucket/p/q", client) == expected


def test_triton_url_rejects_an_ipv6_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = _s3.s3_client(endpoint_url="http://[::1]:9000")
    with pytest.raises(_s3.S3LocationError, match=r"got '::1'; no IPv6 literal"):
        _s3.triton_url("s3://bucket/p", client)


def test_pinning_rewrites_only_the_version_policy(tmp_path: pathlib.Path) -> None:
    onnx.save(layer_model(1), tmp_path / "m.onnx")
    triton_repo.write_repository(tmp_path / "repo", "m", tmp_path / "m.onnx", options=CPU)
    text = (tmp_path / "repo" / "m" / "config.pbtxt").read_text()
    pinned = _s3_repository._with_policy(text, [3, 1])
    assert "specific" in pinned and _s3_repository._policy_text(pinned) == "pinned [1, 3]"
    assert _s3_repository._served(pinned, [1, 2, 3, 4]) == [1, 3]
    assert _s3_repository._served(text, [1, 2, 3]) == [3]  # latest 1
    released = _s3_repository._with_policy(pinned, None, 1)
    assert triton_repo.config_from_text(released) == triton_repo.config_from_text(text)


# ------------------------------------------------------------------------- against moto + Triton


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    server = MotoS3Server(tmp_path_factory.mktemp("moto") / "moto.log").start()
    with pytest.MonkeyPatch.context() as mp:
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
            mp.delenv(key, raising=False)
        for key, value in server.env().items():
            mp.setenv(key, value)
        _s3.s3_client().create_bucket(Bucket=BUCKET)
        yield server
    server.stop()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[int, pathlib.Path]:
    folder = tmp_path_factory.mktemp("onnx")
    paths = {}
    for seed in (1, 2, 3):
        paths[seed] = folder / f"seed{seed}.onnx"
        onnx.save(layer_model(seed), paths[seed])
    return paths


def _local_repo(
    tmp: pathlib.Path, name: str, models: dict[int, pathlib.Path], seeds: list[int]
) -> pathlib.Path:
    repo = tmp / "repo"
    for seed in seeds:
        triton_repo.write_repository(repo, name, models[seed], options=CPU)
    return repo


@pytest.fixture(scope="module")
def server(moto: MotoS3Server, models, tmp_path_factory):  # type: ignore[no-untyped-def]
    repo = _local_repo(tmp_path_factory.mktemp("first"), "first", models, [1])
    _s3_push.push_repository(repo, URL, settle_secs=0)
    with triton_repo.LocalTritonServer(URL, triton_repo.ServerConfig(ready_timeout=90, health_port=0)) as srv:
        yield srv


def _output_seed(y: np.ndarray) -> int | None:
    """Which seed's model produced ``y`` for input X (None: neither)."""
    for seed in (1, 2, 3):
        if np.allclose(y, reference(layer_model(seed), X), atol=ATOL, rtol=0):
            return seed
    return None


def _wait_seed(client: triton_repo.Client, seed: int, timeout: float = 60.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if _output_seed(client.infer(X)) == seed:
                return time.monotonic() - start
        except triton_repo.TritonRepoError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"seed {seed} not served after {timeout}s")


@pytest.mark.server
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_server_on_s3_serves_the_pushed_model(server: triton_repo.LocalTritonServer, protocol: str) -> None:
    url = server.grpc_url if protocol == "grpc" else server.http_url
    client = triton_repo.Client(url, "first", protocol=protocol).wait_ready(60)
    y = client.infer(X)
    np.testing.assert_allclose(y, reference(layer_model(1), X), atol=ATOL, rtol=0)
    assert server.s3 is not None and server.s3.triton_url.startswith("s3://127.0.0.1:")


@pytest.mark.server
def test_credentials_reach_the_server_only_through_its_environment(
    server: triton_repo.LocalTritonServer,
) -> None:
    secret = CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
    cmdline = pathlib.Path(f"/proc/{server.pid}/cmdline").read_bytes().decode()
    assert secret not in cmdline and CREDENTIALS["AWS_ACCESS_KEY_ID"] not in cmdline
    assert f"--model-repository={server.s3.triton_url}" in cmdline.split("\0")
    assert secret not in server.log_path.read_text(errors="replace")
    environ = pathlib.Path(f"/proc/{server.pid}/environ").read_bytes().decode().split("\0")
    assert f"AWS_SECRET_ACCESS_KEY={secret}" in environ
    mount = [v for v in environ if v.startswith("TRITON_AWS_MOUNT_DIRECTORY=")]
    assert len(mount) == 1
    mount_dir = pathlib.Path(mount[0].split("=", 1)[1])
    assert mount_dir.is_dir() and (mount_dir.stat().st_mode & 0o077) == 0  # private
    assert any(mount_dir.iterdir()), "Triton's copies of the S3 model are not in the private folder"


@pytest.mark.server
@pytest.mark.slow
def test_new_version_under_load_fails_no_request(
    server: triton_repo.LocalTritonServer, models, tmp_path: pathlib.Path
) -> None:
    repo = _local_repo(tmp_path, "swap", models, [1])
    _s3_push.push_repository(repo, URL, settle_secs=0)
    clients = [
        triton_repo.Client(server.grpc_url, "swap").wait_ready(60),
        triton_repo.Client(server.http_url, "swap", protocol="http").wait_ready(60),
    ]
    stop = threading.Event()
    seen: list[int | None] = []
    failures: list[str] = []
    lock = threading.Lock()

    def load(client: triton_repo.Client) -> None:
        for _ in range(5000):  # bounded; ends when told
            if stop.is_set():
                return
            try:
                seed = _output_seed(client.infer(X))
                with lock:
                    seen.append(seed)
            except Exception as exc:  # every failure is counted, none hidden
                with lock:
                    failures.append(repr(exc))

    threads = [threading.Thread(target=load, args=(c,)) for c in clients for _ in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        triton_repo.write_repository(repo, "swap", models[2], options=CPU)
        report = _s3_push.push_repository(repo, URL, settle_secs=SETTLE)
        assert report.uploaded == {"swap": [2]} and report.pinned == {"swap": [1]}
        pushed = time.monotonic()
        while time.monotonic() - pushed < 60:
            with lock:
                if seen[-8:].count(2) == 8:
                    break
            time.sleep(0.2)
        switch = time.monotonic() - pushed
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    print(f"\nS3 swap under load: {len(seen)} requests, {len(failures)} failed, new version served "
          f"{switch:.1f}s after the push ended (poll_secs={server.config.poll_secs})")
    assert failures == []
    assert None not in seen, "a response matched neither version"
    assert seen[-1] == 2 and seen.count(1) > 0
    first2 = seen.index(2)
    assert 1 not in seen[first2 + 8 * len(threads) :], "the old version came back"
    assert _s3_repository.list_repository(URL)["swap"].policy == "latest 1"


def _readyz(server: triton_repo.LocalTritonServer) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{server.health_url}/readyz", timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.server
def test_stub_killed_on_s3_is_restarted_and_readyz_tells_the_truth(
    server: triton_repo.LocalTritonServer, models, tmp_path: pathlib.Path
) -> None:
    """A Python-backend stub of a model served from S3, killed -9 under load: the supervisor
    names its model (Triton runs a local copy of it), /readyz answers 503 until the model is
    loaded again, then requests succeed again (issue 19, item 1)."""
    repo = _local_repo(tmp_path, "stubkill", models, [1])
    _s3_push.push_repository(repo, URL, settle_secs=0)
    client = triton_repo.Client(server.grpc_url, "stubkill", timeout=30).wait_ready(60)
    _wait_seed(client, 1)
    live = [s for s in _supervisor.list_stubs(server.pid, server.repo_dir) if not s.dead]
    # The model's stubs by their instance name (stubkill_0_0), whatever the supervisor calls them.
    stubs = [s.pid for s in live if b"\0stubkill_" in pathlib.Path(f"/proc/{s.pid}/cmdline").read_bytes()]
    assert stubs
    assert _readyz(server) == 200
    results: list[tuple[float, bool]] = []
    probes: list[tuple[float, int]] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                ok = _output_seed(client.infer(X)) == 1
            except triton_repo.TritonRepoError:
                ok = False
            results.append((t0, ok))
            if not ok:
                time.sleep(0.02)  # a client retrying, not a busy loop

    def probe() -> None:
        while not stop.is_set():
            probes.append((time.monotonic(), _readyz(server)))
            time.sleep(0.02)

    threads = [threading.Thread(target=load), threading.Thread(target=probe)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 60
        while len(results) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        killed_at = time.monotonic()
        for pid in stubs:
            os.kill(pid, signal.SIGKILL)
        while time.monotonic() < deadline + 60:
            after = [ok for t0, ok in results if t0 > killed_at]
            if len(after) >= 20 and all(after[-20:]) and probes[-1][1] == 200:
                break
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    after = [(t0, ok) for t0, ok in results if t0 > killed_at]
    failed = [t0 for t0, ok in after if not ok]
    down = [t for t, code in probes if t > killed_at and code == 503]
    assert len(after) >= 20 and all(ok for _, ok in after[-20:]), "requests never succeeded again"
    assert down, "/readyz said 200 while the model's stub was dead"
    ready_again = min((t for t, code in probes if t > max(down) and code == 200), default=None)
    assert ready_again is not None and _readyz(server) == 200
    assert server.readiness() == (True, "ready")
    assert "stubkill" in {s.model for s in live}, "the stub of the S3 model is not named after it"
    failing = max(failed, default=killed_at) - killed_at
    print(f"\nS3 stub SIGKILL under load ({len(stubs)} stub): {len(after)} requests after the kill, "
          f"{len(failed)} failed (fast, within {failing:.2f}s), "
          f"/readyz 503 for {max(down) - min(down):.2f}s, ready again {ready_again - killed_at:.2f}s "
          "after the kill")


_KILLED_PUSH = """
import os, sys, time
from triton_repo import _s3_push, _supervisor
def progress(event, key):
    if event == "upload":
        open(sys.argv[3], "w").write(key)
        time.sleep(600)  # killed here, mid-upload
_s3_push.push_repository(sys.argv[1], sys.argv[2], settle_secs=float(sys.argv[4]), progress=progress)
"""


@pytest.mark.server
@pytest.mark.slow
def test_push_killed_mid_upload_never_exposes_the_partial_version(
    server: triton_repo.LocalTritonServer, models, tmp_path: pathlib.Path
) -> None:
    repo = _local_repo(tmp_path, "kill", models, [1])
    _s3_push.push_repository(repo, URL, settle_secs=0)
    client = triton_repo.Client(server.grpc_url, "kill").wait_ready(60)
    assert _output_seed(client.infer(X)) == 1
    triton_repo.write_repository(repo, "kill", models[2], options=CPU)
    marker = tmp_path / "uploading"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_PUSH, str(repo), URL, str(marker), str(SETTLE)],
        env=os.environ.copy(),
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert marker.exists(), "the push never started uploading"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    remote = _s3_repository.list_repository(URL)["kill"]
    assert remote.versions == (1, 2) and remote.policy == "pinned [1]"
    assert len(remote.files[2]) < 3, "version 2 should be partial"
    # The running server keeps serving version 1, for several polls, and stays ready.
    for _ in range(10):
        assert _output_seed(client.infer(X)) == 1
        time.sleep(0.5)
    assert client.is_ready() and server.is_alive()
    # A server restarted on the bucket now loads version 1 only, and stays responsive.
    with triton_repo.LocalTritonServer(URL, triton_repo.ServerConfig(ready_timeout=90)) as restarted:
        fresh = triton_repo.Client(restarted.http_url, "kill", protocol="http").wait_ready(60)
        assert _output_seed(fresh.infer(X)) == 1
        assert triton_repo.Client(restarted.http_url, "kill", protocol="http", version=2).is_ready() is False
        # Pushing again completes version 2 and releases the pin: both servers switch.
        report = _s3_push.push_repository(repo, URL, settle_secs=SETTLE)
        assert report.uploaded == {"kill": [2]} and report.skipped == {"kill": [1]}
        _wait_seed(fresh, 2)
        _wait_seed(client, 2)
        environ = pathlib.Path(f"/proc/{restarted.pid}/environ").read_bytes().decode().split("\0")
        mount = next(v.split("=", 1)[1] for v in environ if v.startswith("TRITON_AWS_MOUNT_DIRECTORY="))
        assert any(pathlib.Path(mount).iterdir())
        code = restarted.stop()
        assert not pathlib.Path(mount).exists(), "Triton's S3 copies were left behind"
        assert code is not None and code >= 0, f"exit {code}: needed SIGTERM/SIGKILL (a hung load?)"
    assert _s3_repository.list_repository(URL)["kill"].policy == "latest 1"


@pytest.mark.server
@pytest.mark.slow
def test_remove_version_rolls_back_to_the_previous_one(
    server: triton_repo.LocalTritonServer, models, tmp_path: pathlib.Path
) -> None:
    repo = _local_repo(tmp_path, "rm", models, [1, 3])
    _s3_push.push_repository(repo, URL, settle_secs=0)
    client = triton_repo.Client(server.grpc_url, "rm").wait_ready(60)
    _wait_seed(client, 3)
    assert _s3_push.remove_version(URL, "rm", 2, settle_secs=SETTLE) == [1]  # version 2 holds seed 3
    _wait_seed(client, 1)
    remote = _s3_repository.list_repository(URL)["rm"]
    assert remote.versions == (1,) and remote.policy == "latest 1"
    with pytest.raises(_s3.S3LocationError, match=r"only version of model 'rm'"):
        _s3_push.remove_version(URL, "rm", 1, settle_secs=0)
    with pytest.raises(_s3.S3LocationError, match=r"version 7 of model 'rm' is not in .*found \[1\]"):
        _s3_push.remove_version(URL, "rm", 7, settle_secs=0)
    with pytest.raises(_s3.S3LocationError, match=r"model 'nothere' is not in"):
        _s3_push.remove_version(URL, "nothere", 1, settle_secs=0)


def _cli(*argv: str) -> int:
    from pixeldcn_core.cli import main

    return main(list(argv))


def test_repo_cli_push_ls_rm(moto: MotoS3Server, models, tmp_path: pathlib.Path, capsys) -> None:  # type: ignore[no-untyped-def]
    repo = _local_repo(tmp_path, "cli", models, [1, 2])
    url = f"s3://{BUCKET}/cli-test"
    assert _cli("repo", "push", str(repo), url, "--settle-secs", "0") == 0
    out = capsys.readouterr().out
    assert "uploaded cli versions [1, 2]" in out
    assert _cli("repo", "push", str(repo), url, "--settle-secs", "0") == 0
    assert "skipped  cli versions [1, 2]" in capsys.readouterr().out
    assert _cli("repo", "ls", url) == 0
    assert "cli\tversions 1 2\tlatest 1" in capsys.readouterr().out
    assert _cli("repo", "rm", url, "cli", "2", "--settle-secs", "0") == 0
    assert "versions left: [1]" in capsys.readouterr().out
    assert _cli("repo", "rm", url, "cli", "1", "--settle-secs", "0") == 2
    assert "only version of model 'cli'" in capsys.readouterr().err
    assert _cli("repo", "push", str(tmp_path / "missing"), url) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert _cli("repo", "ls", "s3://UPPER/x") == 2
    assert "bucket 'UPPER'" in capsys.readouterr().err
    assert _cli("repo", "push", str(repo), url, "--model", "other") == 2
    assert "model 'other' is not in" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        _cli("repo", "rm", url, "cli", "notanumber")
    assert exc.value.code == 2


@pytest.mark.server
@pytest.mark.slow
def test_serve_command_on_s3(server: triton_repo.LocalTritonServer) -> None:
    import re

    proc = subprocess.Popen(
        [sys.executable, "-m", "triton_repo.cli_serve", URL], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )  # fmt: skip
    try:
        lines = []
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "press Ctrl-C" in line:
                break
        text = "".join(lines)
        assert f"serving {URL}" in text, text + proc.stderr.read()  # type: ignore[union-attr]
        grpc = re.search(r"gRPC\s+(\S+)", text).group(1)  # type: ignore[union-attr]
        client = triton_repo.Client(grpc, "first").wait_ready(60)
        assert _output_seed(client.infer(X)) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.server
@pytest.mark.slow
def test_without_the_pin_triton_loads_a_partial_version_and_hangs(
    moto: MotoS3Server, models, tmp_path: pathlib.Path
) -> None:
    """The upstream behaviour the pin protects from (Triton 2.51), pinned so a fix upstream shows.

    A version whose model.onnx landed before its model.py is loaded at once and stays LOADING: the
    server turns not ready, never loads the version after the rest lands, and ignores SIGTERM.
    """
    url = f"s3://{BUCKET}/naive"
    repo = _local_repo(tmp_path, "naive", models, [1, 2])
    _s3_push.push_repository(repo, url, versions=[1], settle_secs=0)
    client = _s3.s3_client()
    server = triton_repo.LocalTritonServer(
        url, triton_repo.ServerConfig(ready_timeout=90, restart_on_crash=False)
    ).start()
    try:
        http = triton_repo.Client(server.http_url, "naive", protocol="http", version=2)
        base = _s3.S3Location.parse(url)
        onnx_file = repo / "naive" / "2" / "model.onnx"
        client.upload_file(str(onnx_file), BUCKET, base.key("naive", "2", "model.onnx"))
        time.sleep(4)  # two polls
        for rel in _s3_push._local_files(repo / "naive" / "2"):
            client.upload_file(str(repo / "naive" / "2" / rel), BUCKET, base.key("naive", "2", rel))
        time.sleep(6)  # three more polls: version 2 complete in the bucket
        assert "loading: naive:2" in server.log_tail(20000)
        assert not http.is_ready(), "Triton 2.51 now loads a version completed later: re-measure"
        os.kill(server.pid, signal.SIGTERM)
        time.sleep(5)
        assert server.is_alive(), "Triton 2.51 now stops on SIGTERM with a load stuck: re-measure"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.stop()


def test_repo_ls_escapes_names_read_from_the_bucket(moto: MotoS3Server, capsys) -> None:  # type: ignore[no-untyped-def]
    """Object names are anyone's: an ANSI escape or a right-to-left override in a model folder's
    name is printed escaped, never raw (issue 19, item 7)."""
    url = f"s3://{BUCKET}/hostile-names"
    client = _s3.s3_client()
    for name in ("\x1b[31mred", "evil\u202etxt.exe", "back\\slash"):
        client.put_object(Bucket=BUCKET, Key=f"hostile-names/{name}/1/model.onnx", Body=b"x")
    assert _cli("repo", "ls", url) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out, repr(out)
    assert "\\x1b[31mred\tversions 1\tno config" in out, out
    assert "evil\\u202etxt.exe\tversions 1" in out and "back\\\\slash\tversions 1" in out, out


def test_a_removed_version_stays_withdrawn_until_republished(
    moto: MotoS3Server, models, tmp_path: pathlib.Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    """``repo rm`` leaves a tombstone: the next push (the same local repository, still holding the
    version) does not upload it again; ``--republish`` does (issue 19, item 3)."""
    url = f"s3://{BUCKET}/rollback"
    repo = _local_repo(tmp_path, "unet", models, [1, 2])
    assert _s3_push.push_repository(repo, url, settle_secs=0).uploaded == {"unet": [1, 2]}
    assert _s3_push.remove_version(url, "unet", 2, settle_secs=0) == [1]
    report = _s3_push.push_repository(repo, url, settle_secs=0)
    assert report.uploaded == {} and report.withdrawn == {"unet": [2]} and report.skipped == {"unet": [1]}
    remote = _s3_repository.list_repository(url)["unet"]
    assert remote.versions == (1,) and remote.withdrawn == (2,) and remote.policy == "latest 1"
    # A new local version is pushed; the withdrawn one still is not.
    triton_repo.write_repository(repo, "unet", models[3], options=CPU)
    report = _s3_push.push_repository(repo, url, settle_secs=0)
    assert report.uploaded == {"unet": [3]} and report.withdrawn == {"unet": [2]}
    assert _s3_repository.list_repository(url)["unet"].versions == (1, 3)
    assert _cli("repo", "push", str(repo), url, "--settle-secs", "0") == 0
    assert "withheld unet versions [2] (withdrawn with 'repo rm'; --republish" in capsys.readouterr().out
    assert _cli("repo", "ls", url) == 0
    assert "unet\tversions 1 3\tlatest 1\twithdrawn 2" in capsys.readouterr().out
    assert _cli("repo", "push", str(repo), url, "--settle-secs", "0", "--republish") == 0
    assert "uploaded unet versions [2]" in capsys.readouterr().out
    remote = _s3_repository.list_repository(url)["unet"]
    assert remote.versions == (1, 2, 3) and remote.withdrawn == () and remote.policy == "latest 1"
    # A tombstone that is not one is refused with its key, never guessed at.
    _s3.s3_client().put_object(Bucket=BUCKET, Key="rollback/unet/withdrawn.json", Body=b"[2]")
    with pytest.raises(_s3.S3Error, match=r"rollback/unet/withdrawn.json is not a tombstone"):
        _s3_push.push_repository(repo, url, settle_secs=0)


@pytest.mark.server
@pytest.mark.slow
def test_replicas_on_s3_restart_a_dead_stub_each(moto: MotoS3Server, models, tmp_path: pathlib.Path) -> None:
    """``serve s3://... --replicas N`` runs N such servers: a stub killed in one replica is
    restarted by that replica, whose readiness is false meanwhile (issue 19, item 1)."""
    url = f"s3://{BUCKET}/replicas"
    _s3_push.push_repository(_local_repo(tmp_path, "rep", models, [1]), url, settle_secs=0)
    config = triton_repo.ServerConfig(ready_timeout=90)
    with triton_repo.LocalReplicas(url, 2, config) as replicas:
        victim, other = replicas.servers
        stubs = [
            s.pid for s in _supervisor.list_stubs(victim.pid, victim.repo_dir)
            if b"\0rep_" in pathlib.Path(f"/proc/{s.pid}/cmdline").read_bytes()
        ]  # fmt: skip
        assert stubs and victim.readiness() == (True, "ready")
        for pid in stubs:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while victim.readiness()[0] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "['rep'] are down" in victim.readiness()[1] or not victim.readiness()[0]
        assert other.readiness() == (True, "ready")
        while not victim.readiness()[0] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert victim.readiness() == (True, "ready")
        client = triton_repo.Client(victim.grpc_url, "rep").wait_ready(60)
        assert _output_seed(client.infer(X)) == 1
        assert any(what == "loaded" for _, model, what in victim.supervisor.events if model == "rep")


def test_server_on_an_unreachable_bucket_fails_with_the_reason_and_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tempfile

    from .scale_helpers import free_port, set_env

    set_env(monkeypatch, {**CREDENTIALS, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"})
    # this process's temp folders only (<prefix><pid>-...): other test workers start servers too
    mine = f"pixeldcn-tritonserver-{os.getpid()}-*"
    before = set(pathlib.Path(tempfile.gettempdir()).glob(mine))
    server = triton_repo.LocalTritonServer(f"s3://{BUCKET}/nowhere")
    with pytest.raises(_s3.S3Error, match=r"cannot list s3://pixeldcn-models/nowhere"):
        server.start()
    assert set(pathlib.Path(tempfile.gettempdir()).glob(mine)) <= before
    assert not server.is_alive()
