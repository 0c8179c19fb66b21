"""``pixeldcn serve``: serve a model repository with the local tritonserver.

Registered in the ``pixeldcn.commands`` entry-point group. Nothing heavy is imported until the
command runs, so ``pixeldcn --help`` stays fast and works without the ``[triton]`` extra.
``python -m triton_repo.cli_serve REPO`` runs it without the entry points.

Exit codes: 0 stopped (Ctrl-C or SIGTERM), 1 server failure, 2 bad arguments or input.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import signal
import sys
import time
from typing import Any

from pixeldcn_core.cli import finite_float, run_command

__all__ = ["main", "register"]


def register(subparsers: Any) -> None:
    """Add the ``serve`` subcommand to ``subparsers`` (from ``add_subparsers``)."""
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
    serve.add_argument("--http-port", type=int, default=None,
                       help="HTTP port (default: a free port, printed once ready)")
    serve.add_argument("--grpc-port", type=int, default=None,
                       help="gRPC port, e.g. 8001, Triton's usual one (default: a free port, printed "
                       "once ready: pass it to pixeldcn infer --url)")
    serve.add_argument("--metrics-port", type=int, default=None, help="metrics port (default: free port)")
    serve.add_argument(
        "--poll-secs", type=int, default=1, help="seconds between repository polls (default 1)"
    )
    serve.add_argument("--ready-timeout", type=finite_float, default=120.0,
                       help="seconds to wait for readiness")
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


def _check_repository(repo: str | pathlib.Path) -> None:
    """A local REPO must be an existing folder (exit 2 naming it, before anything starts)."""
    from ._errors import RepositoryError

    if isinstance(repo, pathlib.Path) and not repo.is_dir():
        state = "is a file" if repo.exists() else "does not exist"
        raise RepositoryError(f"REPO {str(repo)!r} {state}; expected a model repository folder "
                              "(write one with pixeldcn repo write) or s3://BUCKET/PREFIX")


def _serve(args: argparse.Namespace) -> int:
    from ._server import LocalTritonServer
    from ._server_config import ServerConfig

    _check_repository(args.repo)
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
            f"send a picture: pixeldcn infer --url {server.grpc_url} --model MODEL --input "
            "picture.png\npress Ctrl-C to stop",
            flush=True,
        )
        while _running(server, args.ready_timeout):
            time.sleep(0.5)
        print(f"error: tritonserver exited\n{server.log_tail()}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, _Shutdown):
        print("stopping", file=sys.stderr, flush=True)
        return 0
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


def main(argv: list[str] | None = None) -> int:
    """``python -m triton_repo.cli_serve REPO ...``: ``pixeldcn serve`` without the entry points."""
    return run_command(register, "serve", argv)


if __name__ == "__main__":
    sys.exit(main())
