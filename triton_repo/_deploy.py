"""Kubernetes and KServe manifests for a model repository in object storage.

Everything comes from the models' own configs (``config.pbtxt``, generated from
:class:`ServingOptions` by :func:`write_repository`): the instance kind decides whether pods ask
for GPUs, ``max_request_bytes`` sets the Ingress body limit, ``max_batch_size`` x ``instances``
sets the autoscaler's in-flight target, a TensorRT engine cache path gets a writable volume. The
deployment options (:class:`DeployOptions`) add what only the cluster knows: replicas, resources,
ports, poll interval, Secret names, host names.

Objects are built as plain dicts in the Kubernetes API's own field names and written with
PyYAML, never from text templates; ``tests/test_deploy_*.py`` load every object into the official
``kubernetes`` (and ``kserve``) client models and run checkov on the files.

Image: the official ``nvcr.io/nvidia/tritonserver:<YY.MM>-py3`` matching a Triton version, from
:data:`TRITON_CONTAINERS` (NGC release notes; Triton 2.X ships in one monthly container).

Modules: :mod:`~triton_repo._deploy_options` (:class:`DeployOptions`, images),
:mod:`~triton_repo._deploy_models` (:func:`read_models`), :mod:`~triton_repo._deploy_workload`
(Deployment, Service, autoscaler, disruption budget), :mod:`~triton_repo._deploy_network`
(Ingress, NetworkPolicy, Namespace, ServiceMonitor); this one assembles them into files
(:func:`kubernetes_manifests`) and writes them (:func:`write_manifests`). KServe:
:mod:`~triton_repo._kserve`.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

from ._deploy_models import ModelSummary
from ._deploy_network import ingress, ingress_controller_settings, namespace, network_policy, service_monitor
from ._deploy_options import DeployOptions
from ._deploy_workload import autoscaler, deployment, disruption_budget, service
from ._errors import ConfigError, TritonNotInstalledError
from ._s3 import S3Location

__all__ = ["ORDER_PREFIX", "kubernetes_manifests", "to_yaml", "write_manifests"]

#: Manifest file names, prefixed so that ``kubectl apply -f DIR`` (files in lexical order)
#: creates the Namespace and the ServiceAccount before the objects that live in them.
ORDER_PREFIX = {"namespace": "00", "service-account": "05"}


def _yaml() -> Any:
    try:
        import yaml
    except ImportError as exc:
        raise TritonNotInstalledError(
            "writing manifests needs PyYAML; install it with: pip install 'pixeldcn[deploy]'"
        ) from exc
    return yaml


def _ordered(files: Mapping[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """File names prefixed so that lexical order is apply order: the Namespace (``00-``) and the
    ServiceAccount (``05-``) first, everything else after (``10-``); ``optional/`` files as they are."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, objects in files.items():
        if "/" in name:
            out[name] = objects
            continue
        prefix = ORDER_PREFIX.get(name.removesuffix(".yaml"), "10")
        out[f"{prefix}-{name}"] = objects
    return dict(sorted(out.items()))


def kubernetes_manifests(
    repository: str, models: list[ModelSummary], options: DeployOptions | None = None
) -> dict[str, list[dict[str, Any]]]:
    """The production GPU deployment: file name -> objects.

    Args:
        repository: ``s3://BUCKET/PREFIX`` the pods serve.
        models: the repository's models (:func:`read_models`).
        options: the cluster side; default :class:`DeployOptions`.
    """
    options = options or DeployOptions()
    S3Location.parse(repository)
    if not models:
        raise ConfigError("models is empty; expected the repository's models (read_models)")
    files: dict[str, list[dict[str, Any]]] = {}
    if options.namespace:
        files["namespace.yaml"] = [namespace(options)]
    files |= {
        "deployment.yaml": [deployment(repository, models, options)],
        "network-policy.yaml": [network_policy(options)],
        "service.yaml": [service(options)],
        "autoscaler.yaml": [autoscaler(models, options)],
        "disruption-budget.yaml": [disruption_budget(options)],
    }
    if options.ingress_host:
        files["ingress.yaml"] = [ingress(models, options, grpc=False), ingress(models, options, grpc=True)]
        # Not applied by `kubectl apply -f DIR` (not recursive): merge into the controller's own.
        files["optional/ingress-nginx-controller-settings.yaml"] = [ingress_controller_settings(options)]
    if options.service_monitor:
        files["service-monitor.yaml"] = [service_monitor(options)]
    return _ordered(files)


# ---------------------------------------------------------------------------- writing


def to_yaml(objects: Iterable[Mapping[str, Any]]) -> str:
    """Objects as a multi-document YAML stream (PyYAML, block style, keys in insertion order)."""
    return _yaml().safe_dump_all(list(objects), sort_keys=False, default_flow_style=False, width=100)


def write_manifests(
    out_dir: str | os.PathLike[str], files: Mapping[str, list[dict[str, Any]]]
) -> list[pathlib.Path]:
    """Write ``files`` (name -> objects) into ``out_dir`` (created); return the paths."""
    from pixeldcn_core.io import write_bytes_atomic

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, objects in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, to_yaml(objects).encode("utf-8"))
        written.append(path)
    return written
