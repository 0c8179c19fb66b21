"""The network side of the production deployment: the Ingress objects (HTTP and gRPC) with the
ingress-nginx annotations that bound body size and timeouts, the controller-wide settings no
annotation can set, the NetworkPolicy, the Namespace (Pod Security "restricted") and the
Prometheus-operator ServiceMonitor.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ._deploy_models import ModelSummary
from ._deploy_options import DeployOptions
from ._deploy_workload import _metadata, _selector

__all__ = [
    "body_limit_bytes",
    "ingress",
    "ingress_annotations",
    "ingress_controller_settings",
    "namespace",
    "network_policy",
    "service_monitor",
]


def _size_text(n: int) -> str:
    """Bytes as an nginx size, rounded up to MiB (``"5m"``)."""
    return f"{max(1, math.ceil(n / (1 << 20)))}m"


def body_limit_bytes(models: Iterable[ModelSummary], *, default: int = 64 << 20) -> int:
    """The Ingress request body limit: the largest model's ``max_request_bytes`` + 64 KiB of
    headers and framing (binary tensor protocol; JSON tensors are larger and not supported
    through the Ingress at that size)."""
    limits = [m.max_request_bytes for m in models if m.max_request_bytes]
    return (max(limits) if limits else default) + (64 << 10)


def ingress_annotations(models: list[ModelSummary], options: DeployOptions, *, grpc: bool) -> dict[str, str]:
    """ingress-nginx annotations for what Triton itself cannot bound: body size and timeouts."""
    timeout = str(options.request_timeout_secs)
    annotations = {
        "nginx.ingress.kubernetes.io/proxy-body-size": _size_text(body_limit_bytes(models)),
        "nginx.ingress.kubernetes.io/proxy-connect-timeout": "5",
        "nginx.ingress.kubernetes.io/proxy-read-timeout": timeout,
        "nginx.ingress.kubernetes.io/proxy-send-timeout": timeout,
        "nginx.ingress.kubernetes.io/proxy-request-buffering": "on",
        "nginx.ingress.kubernetes.io/proxy-next-upstream": "error timeout http_503",
        "nginx.ingress.kubernetes.io/proxy-next-upstream-tries": "3",
    }
    if grpc:
        annotations["nginx.ingress.kubernetes.io/backend-protocol"] = "GRPC"
    return annotations


def ingress(models: list[ModelSummary], options: DeployOptions, *, grpc: bool) -> dict[str, Any]:
    assert options.ingress_host is not None
    host = f"grpc.{options.ingress_host}" if grpc else options.ingress_host
    port_name = "grpc" if grpc else "http"
    path = "/inference.GRPCInferenceService" if grpc else "/v2"
    spec: dict[str, Any] = {
        "ingressClassName": options.ingress_class,
        "rules": [{
            "host": host,
            "http": {"paths": [{
                "path": path, "pathType": "Prefix",
                "backend": {"service": {"name": options.name, "port": {"name": port_name}}},
            }]},
        }],
    }  # fmt: skip
    if options.tls_secret:
        spec["tls"] = [{"hosts": [host], "secretName": options.tls_secret}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _metadata(options, f"{options.name}-{port_name}",
                              annotations=ingress_annotations(models, options, grpc=grpc)),
        "spec": spec,
    }  # fmt: skip


def ingress_controller_settings(options: DeployOptions) -> dict[str, Any]:
    """Controller-wide ingress-nginx settings no annotation can set: header and idle timeouts.

    Merge into the controller's own ConfigMap (its name and namespace depend on the install).
    """
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ingress-nginx-controller", "namespace": "ingress-nginx"},
        "data": {
            "client-header-timeout": "10",
            "client-body-timeout": str(options.request_timeout_secs),
            "keep-alive": "75",
            "upstream-keepalive-timeout": "60",
            "http2-max-concurrent-streams": "128",
        },
    }


def service_monitor(options: DeployOptions) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _metadata(options),
        "spec": {
            "selector": {"matchLabels": _selector(options)},
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}],
        },
    }


def namespace(options: DeployOptions) -> dict[str, Any]:
    labels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}
    metadata = {"name": options.namespace, "labels": labels}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}


def network_policy(
    options: DeployOptions,
    *,
    selector: Mapping[str, str] | None = None,
    ports: Iterable[int | str] = ("http", "grpc", "metrics"),
) -> dict[str, Any]:
    """Ingress to the pods only on the HTTP, gRPC and metrics ports (egress: S3, DNS stay open).

    ``selector`` picks the pods (default: the Deployment's), ``ports`` are names or numbers.
    """
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(options),
        "spec": {
            "podSelector": {"matchLabels": dict(selector or _selector(options))},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"port": port, "protocol": "TCP"} for port in ports]}],
        },
    }
