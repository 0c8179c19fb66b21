"""``pixeldcn deploy kubernetes``: Kubernetes or KServe manifests for a repository in S3.

Registered in the ``pixeldcn.commands`` entry-point group. One flag per :class:`DeployOptions`
field, generated from the dataclass (its docstring gives the help), so the command and the API
never drift apart. Errors are ``TritonRepoError`` (exit 2 for bad input, 1 for a failure).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from pixeldcn_core.cli import attribute_help

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``deploy`` with its ``kubernetes`` sub-command."""
    deploy = subparsers.add_parser(
        "deploy",
        help="write Kubernetes / KServe manifests for a model repository in S3",
        description="Write deployment manifests for a model repository in object storage.",
    )
    sub = deploy.add_subparsers(dest="deploy_command", metavar="TARGET", required=True)
    k8s = sub.add_parser(
        "kubernetes",
        help="Deployment, Service, HPA, PDB, Ingress (or a KServe InferenceService)",
        description=(
            "Write the production GPU flavour for REPOSITORY (s3://BUCKET/PREFIX) into --out: "
            "Deployment of the official Triton image, Service, HorizontalPodAutoscaler, "
            "PodDisruptionBudget, and with --ingress-host an Ingress for HTTP and gRPC "
            "(ingress-nginx annotations). Model settings (GPU or CPU, batch, request size limit) "
            "come from the models' configs, read from --models-from (the local repository that "
            "was pushed) or from the bucket. S3 credentials come from the Secret --s3-secret."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    k8s.add_argument("--repository", required=True, metavar="s3://BUCKET/PREFIX", help="what the pods serve")
    k8s.add_argument("--out", required=True, help="output folder (created)")
    k8s.add_argument(
        "--models-from", default=None, metavar="REPO",
        help="read the models' configs from this local repository (default: from --repository)",
    )  # fmt: skip
    k8s.add_argument("--kserve", action="store_true", help="write a KServe InferenceService instead")
    from ._deploy_options import DeployOptions

    helps = attribute_help(DeployOptions)
    for field in dataclasses.fields(DeployOptions):
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        text = helps.get(field.name, "")
        if isinstance(default, bool):
            k8s.add_argument(flag, action="store_true", default=default, help=text)
        elif isinstance(default, int):
            k8s.add_argument(flag, type=int, default=default, help=text)
        else:
            k8s.add_argument(flag, default=default, help=text)
    k8s.set_defaults(func=_kubernetes)


def _kubernetes(args: argparse.Namespace) -> int:
    from ._deploy import kubernetes_manifests, write_manifests
    from ._deploy_models import read_models
    from ._deploy_options import DeployOptions
    from ._kserve import kserve_manifests
    from ._s3 import S3Location

    S3Location.parse(args.repository)
    options = DeployOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DeployOptions)})
    models = read_models(args.models_from or args.repository)
    build = kserve_manifests if args.kserve else kubernetes_manifests
    files = build(args.repository, models, options)
    for path in write_manifests(args.out, files):
        print(f"wrote {path}")
    print(f"models: {', '.join(m.name for m in models)}; apply with: kubectl apply -f {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m triton_repo.cli_deploy ARGS``: ``pixeldcn deploy`` without the entry points."""
    from pixeldcn_core.cli import run_command

    return run_command(register, "deploy", argv)


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(main())
