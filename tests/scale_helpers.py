"""Helpers for the scale tests: a real S3 API server (moto's standalone server), small models.

moto's server speaks the S3 REST API over HTTP on a loopback port; boto3 and tritonserver talk
to it exactly as to MinIO or AWS (path-style addressing, signed requests).
"""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import onnx

import pixeldcn_core as pc

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "pixeldcn-test-key",
    "AWS_SECRET_ACCESS_KEY": "pixeldcn-test-secret-2f9c",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MotoS3Server:
    """``python -m moto.server`` on a free loopback port, in its own process group."""

    def __init__(self, log_path: pathlib.Path):
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> MotoS3Server:
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto server exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=2):
                    return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise RuntimeError("moto server did not answer in time")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point boto3 at this server."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint_url}


def set_env(monkeypatch, values: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(key, raising=False)
    for key, value in values.items():
        monkeypatch.setenv(key, value)


def layer_model(seed: int, cin: int = 3, cout: int = 2) -> onnx.ModelProto:
    """PixelDCL x [batch, cin, H, W] -> y [batch, cout, 2H, 2W], seeded weights."""
    weights = pc.LayerSpec("pixel_dcl", cin, cout).random_weights(seed=seed)
    return pc.build_layer_model("pixel_dcl", weights)


def reference(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = os.environ.copy()
    env.update(extra)
    return env
