"""``pixeldcn serve`` and ``pixeldcn infer``: thin commands over :mod:`triton_repo`.

Registered in the ``pixeldcn.commands`` entry-point group; :func:`register` adds both
subcommands. Nothing heavy is imported until a command runs, so ``pixeldcn --help`` stays fast
and works without the ``[triton]`` extra.

Exit codes: 0 success, 1 server or runtime failure, 2 bad arguments or input.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import signal
import sys
import time
from typing import Any

__all__ = ["load_input", "main", "register", "save_output", "voc_palette"]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def register(subparsers: Any) -> None:
    """Add the ``serve`` and ``infer`` subcommands to ``subparsers`` (from ``add_subparsers``)."""
    serve = subparsers.add_parser(
        "serve",
        help="serve a model repository with the local tritonserver (CPU, Python backend)",
        description=(
            "Serve REPO (written by triton_repo.write_repository) in the foreground with the "
            "tritonserver shipped in nvidia-pytriton, until SIGINT or SIGTERM. New versions "
            "written into REPO are picked up while serving."
        ),
    )
    serve.add_argument(
        "repo", type=_repository, metavar="REPO", help="model repository folder or s3://BUCKET/PREFIX"
    )
    serve.add_argument(
        "--replicas", type=int, default=1,
        help="run N servers on REPO (replica i: every given port + 10*i); a replica that exits "
        "is restarted (default 1)",
    )  # fmt: skip
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    serve.add_argument("--http-port", type=int, default=None, help="HTTP port (default: free port)")
    serve.add_argument("--grpc-port", type=int, default=None, help="gRPC port (default: free port)")
    serve.add_argument("--metrics-port", type=int, default=None, help="metrics port (default: free port)")
    serve.add_argument(
        "--poll-secs", type=int, default=1, help="seconds between repository polls (default 1)"
    )
    serve.add_argument("--ready-timeout", type=float, default=120.0, help="seconds to wait for readiness")
    serve.add_argument(
        "--exit-timeout",
        type=int,
        default=5,
        help="seconds to let in-flight requests finish on shutdown (default 5)",
    )
    serve.add_argument("--log-file", type=pathlib.Path, default=None, help="server log file")
    serve.add_argument(
        "--health-port", type=int, default=None,
        help="serve GET /readyz and /healthz on this port (0: a free one) for probes: ready only "
        "while every model can answer (false while a stub restarts, true while a version loads)",
    )  # fmt: skip
    serve.set_defaults(func=_serve)

    infer = subparsers.add_parser(
        "infer",
        help="send one image or array to a served model",
        description=(
            "Send INPUT to MODEL on a Triton server. A PNG/JPEG becomes float32 [1, C, H, W] in "
            "[0, 1] (C from the model: 1 grey, 3 RGB, 4 RGBA); a .npy is sent as it is "
            "([C, H, W] or [N, C, H, W]). The output goes to --output: .npy saves the array; "
            ".png saves a clipped image for 1 or 3 channels and an argmax colour mask otherwise."
        ),
    )
    infer.add_argument(
        "--url", required=True,
        help="server address host:port; several, separated by commas, are replicas of one server "
        "(the request goes to one that answers)",
    )  # fmt: skip
    infer.add_argument("--model", required=True, help="model name")
    infer.add_argument("--input", required=True, type=pathlib.Path, help="image (.png, .jpg) or array (.npy)")
    infer.add_argument(
        "--output", type=pathlib.Path, default=None, help="out.npy or out.png (default: summary)"
    )
    infer.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    infer.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    infer.set_defaults(func=_infer)


# ------------------------------------------------------------------------------------ serve


class _Shutdown(Exception):
    """Raised by the SIGTERM handler so that serve stops like on Ctrl-C."""


def _raise_shutdown(signum: int, frame: object) -> None:
    raise _Shutdown(signal.Signals(signum).name)


def _repository(text: str) -> str | pathlib.Path:
    """REPO: ``s3://BUCKET/PREFIX`` as it is, anything else a folder."""
    return text if text.startswith("s3://") else pathlib.Path(text)


def _running(server: Any, restart_timeout: float) -> bool:
    """Whether the server runs, waiting up to ``restart_timeout`` s for its supervisor to
    restart it after a crash."""
    deadline = time.monotonic() + restart_timeout
    while not server.is_alive():
        if time.monotonic() > deadline or server.supervisor is None:
            return False
        time.sleep(0.2)
    return True


def _serve(args: argparse.Namespace) -> int:
    from ._errors import TritonRepoError
    from ._server import LocalTritonServer, ServerConfig

    replicas = getattr(args, "replicas", 1)
    previous = signal.signal(signal.SIGTERM, _raise_shutdown)
    server = None
    try:
        config = ServerConfig(
            host=args.host,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            metrics_port=args.metrics_port,
            poll_secs=args.poll_secs,
            ready_timeout=args.ready_timeout,
            exit_timeout=args.exit_timeout,
        )
        if replicas != 1:
            return _serve_replicas(args, config)
        config = dataclasses.replace(
            config, log_path=args.log_file, health_port=getattr(args, "health_port", None)
        )
        server = LocalTritonServer(args.repo, config)
        server.start()
        for name, reason in sorted(server.skipped.items()):  # not loaded; the others are served
            print(f"warning: skipped {name!r} in {args.repo}: {reason}", file=sys.stderr, flush=True)
        health = f"  health  {server.health_url}/readyz\n" if server.health_url else ""
        print(
            f"serving {args.repo}\n  HTTP    {server.http_url}\n  gRPC    {server.grpc_url}\n"
            f"  metrics {server.metrics_url}\n{health}  log     {server.log_path}\n"
            "press Ctrl-C to stop",
            flush=True,
        )
        while _running(server, args.ready_timeout):
            time.sleep(0.5)
        print(f"error: tritonserver exited\n{server.log_tail()}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, _Shutdown):
        print("stopping", file=sys.stderr, flush=True)
        return 0
    except TritonRepoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
    finally:
        if server is not None:
            server.stop()
        signal.signal(signal.SIGTERM, previous)


def _serve_replicas(args: argparse.Namespace, config: Any) -> int:
    """``serve --replicas N``: the flags as plain values; returns only by an exception."""
    from ._errors import ConfigError
    from ._replicas import serve_replicas

    if not 1 <= args.replicas <= 64:
        raise ConfigError(f"--replicas={args.replicas}; expected an integer in [1, 64]")
    serve_replicas(args.repo, args.replicas, config, log_file=args.log_file)
    return 0


# ------------------------------------------------------------------------------------ infer


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        from ._errors import TritonNotInstalledError

        raise TritonNotInstalledError(
            "reading or writing images needs Pillow; install it with: pip install pillow"
        ) from exc
    return Image


def voc_palette(n: int) -> Any:
    """The PASCAL VOC colour map, ``uint8 [n, 3]``: class c gets the colour whose bits
    interleave those of c (the demo colours its masks with it too)."""
    import numpy as np

    colours = np.zeros((n, 3), dtype=np.uint8)
    for c in range(n):
        r = g = b = 0
        label = c
        for bit in range(8):
            r |= ((label >> 0) & 1) << (7 - bit)
            g |= ((label >> 1) & 1) << (7 - bit)
            b |= ((label >> 2) & 1) << (7 - bit)
            label >>= 3
        colours[c] = (r, g, b)
    return colours


def load_input(path: pathlib.Path, channels: int | None) -> Any:
    """An image as float32 ``[1, C, H, W]`` in [0, 1], or a ``.npy`` array unchanged."""
    import numpy as np

    from ._errors import InferenceInputError

    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix not in _IMAGE_SUFFIXES:
        raise InferenceInputError(
            f"--input {path.name!r} has suffix {suffix!r}; expected .npy or one of {_IMAGE_SUFFIXES}"
        )
    modes = {1: "L", 3: "RGB", 4: "RGBA"}
    if channels not in modes:
        raise InferenceInputError(
            f"the model takes {channels} channels; an image input needs 1, 3 or 4 (send a .npy)"
        )
    with _pillow().open(path) as image:
        pixels = np.asarray(image.convert(modes[channels]), dtype=np.float32) / 255.0
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]  # (H, W, 1)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None])  # (1, C, H, W)


def save_output(y: Any, path: pathlib.Path) -> list[pathlib.Path]:
    """Save ``y`` ([N, K, H, W] or [K, H, W]) as .npy, or as PNG(s): image or argmax mask."""
    import numpy as np

    from ._errors import InferenceInputError

    suffix = path.suffix.lower()
    if suffix == ".npy":
        np.save(path, y)
        return [path]
    if suffix != ".png":
        raise InferenceInputError(f"--output {path.name!r}; expected a .npy or .png file")
    batch = y if y.ndim == 4 else y[None]  # (N, K, H, W)
    if batch.ndim != 4:
        raise InferenceInputError(f"output has shape {list(y.shape)}; a PNG needs [N, K, H, W]")
    image_cls = _pillow()
    written = []
    for i, sample in enumerate(batch):
        if sample.shape[0] in (1, 3):
            pixels = np.clip(sample.astype(np.float32), 0.0, 1.0).transpose(1, 2, 0)  # (H, W, K)
            pixels = np.round(pixels * 255).astype(np.uint8)
            image = image_cls.fromarray(pixels[:, :, 0] if sample.shape[0] == 1 else pixels)
        else:
            labels = sample.argmax(axis=0)  # (H, W)
            image = image_cls.fromarray(voc_palette(sample.shape[0])[labels])  # (H, W, 3)
        target = path if len(batch) == 1 else path.with_name(f"{path.stem}_{i}{path.suffix}")
        image.save(target)
        written.append(target)
    return written


def _infer(args: argparse.Namespace) -> int:
    from ._errors import TritonRepoError
    from ._replicas import connect

    try:
        client = connect(args.url, args.model, protocol=args.protocol, timeout=args.timeout)
        info = client.info()
        channel_axis = 1 if info.max_batch_size > 0 else 0
        channels = info.shape[channel_axis] if len(info.shape) > channel_axis else None
        x = load_input(args.input, channels if channels and channels > 0 else None)
        y = client.infer(x)
        if args.output is None:
            print(
                f"{info.output_name}: shape {list(y.shape)} dtype {y.dtype} "
                f"min {float(y.min()):.6g} max {float(y.max()):.6g}"
            )
        else:
            for written in save_output(y, args.output):
                print(f"wrote {written}")
        return 0
    except TritonRepoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
    except (OSError, ValueError) as exc:  # unreadable input (np.load), unwritable output
        print(f"error: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    """``python -m triton_repo.cli serve|infer ...``: the two commands without ``pixeldcn``."""
    parser = argparse.ArgumentParser(prog="python -m triton_repo.cli")
    subparsers = parser.add_subparsers(dest="command", required=True)
    register(subparsers)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
