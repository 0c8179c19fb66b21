"""The serving workload of the production deployment: the Deployment of tritonserver pods (its
command line, probes, security contexts, volumes, resources, S3 and admin Secrets), its Service,
HorizontalPodAutoscaler and PodDisruptionBudget, and the labels and metadata every object shares.

Objects are plain dicts in the Kubernetes API's own field names; :mod:`triton_repo._deploy`
assembles them into manifest files.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._deploy_models import ModelSummary
from ._deploy_options import (
    LIVENESS_FAILURES,
    LIVENESS_PERIOD_SECS,
    READINESS_FAILURES,
    READINESS_PERIOD_SECS,
    STARTUP_FAILURES,
    STARTUP_PERIOD_SECS,
    DeployOptions,
)
from ._s3 import triton_url_for
from ._server import ADMIN_HEADER, RESTRICTED_APIS

__all__ = [
    "INFLIGHT_METRIC",
    "autoscaler",
    "deployment",
    "disruption_budget",
    "inflight_target",
    "service",
    "triton_args",
]

S3_MOUNT = "/var/lib/triton/s3"  # Triton's copies of S3 models (TRITON_AWS_MOUNT_DIRECTORY)
_RUN_AS = 10001  # an unprivileged UID that no host account shares (the image's files are world-readable)


def _labels(options: DeployOptions) -> dict[str, str]:
    return {"app.kubernetes.io/name": options.name, "app.kubernetes.io/component": "inference-server",
            "app.kubernetes.io/part-of": "pixeldcn"}  # fmt: skip


def _selector(options: DeployOptions) -> dict[str, str]:
    return {"app.kubernetes.io/name": options.name}


def _metadata(options: DeployOptions, name: str | None = None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name or options.name, "labels": _labels(options)}
    if options.namespace:
        meta["namespace"] = options.namespace
    meta.update(extra)
    return meta


def inflight_target(models: Iterable[ModelSummary]) -> int:
    """Pending requests per pod the autoscaler aims at: one full batch per instance of the
    largest model (beyond it requests queue)."""
    return max(max(1, m.max_batch_size) * m.instances for m in models)


def triton_args(repository: str, models: list[ModelSummary], options: DeployOptions) -> list[str]:
    """The tritonserver command line of the Deployment (the container's ``args``)."""
    restricted = f"{','.join(RESTRICTED_APIS)}:{ADMIN_HEADER}=$(TRITON_ADMIN_KEY)"  # as the local server
    args = [
        f"--model-repository={triton_url_for(repository, options.s3_endpoint)}",
        f"--model-control-mode={options.model_control}",
    ]
    if options.model_control == "poll":
        args.append(f"--repository-poll-secs={options.poll_secs}")
    else:
        args += [f"--load-model={m.name}" for m in models]
    args += [
        "--strict-readiness=true",
        "--exit-on-error=true",
        f"--exit-timeout-secs={options.exit_timeout_secs}",
        "--disable-auto-complete-config",
        f"--http-port={options.http_port}",
        f"--grpc-port={options.grpc_port}",
        "--allow-metrics=true",
        f"--allow-gpu-metrics={'true' if any(m.gpu for m in models) else 'false'}",
        f"--metrics-port={options.metrics_port}",
        f"--http-restricted-api={restricted}",
        f"--grpc-restricted-protocol={restricted}",
        "--log-verbose=0",
    ]
    return args


def _probe(
    path: str, period: int, failures: int, *, timeout: int = 3, port: int | str = "http"
) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period,
            "failureThreshold": failures, "timeoutSeconds": timeout, "successThreshold": 1}  # fmt: skip


def _checkov_skips(*pairs: tuple[str, str]) -> dict[str, str]:
    """checkov's in-manifest skips, each with its justification (annotations ``checkov.io/skipN``)."""
    return {f"checkov.io/skip{i}": f"{check}={reason}" for i, (check, reason) in enumerate(pairs, 1)}


_POD_SKIPS = (
    ("CKV_K8S_35", "Triton 2.51 reads S3 credentials only from environment variables (or a JSON file "
                   "of its own format); they come from the Secret through secretKeyRef, never inline"),
    ("CKV_K8S_43", "the image is pinned by its immutable NGC release tag; pass --image with a digest "
                   "to pin it by digest (not known offline)"),
    ("CKV_K8S_11", "no CPU limit on purpose: CFS throttling adds tail latency to inference; the CPU "
                   "request reserves the cores and the autoscaler adds pods"),
)  # fmt: skip


def _s3_env(options: DeployOptions) -> list[dict[str, Any]]:
    def secret(var: str, optional: bool = False) -> dict[str, Any]:
        ref: dict[str, Any] = {"name": options.s3_secret, "key": var}
        if optional:
            ref["optional"] = True
        return {"name": var, "valueFrom": {"secretKeyRef": ref}}

    return [
        secret("AWS_ACCESS_KEY_ID"),
        secret("AWS_SECRET_ACCESS_KEY"),
        secret("AWS_SESSION_TOKEN", optional=True),
        secret("AWS_DEFAULT_REGION", optional=True),
    ]


def _container_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": _RUN_AS,
        "runAsGroup": _RUN_AS,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": _RUN_AS,
        "runAsGroup": _RUN_AS,
        "fsGroup": _RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _volumes(models: list[ModelSummary], options: DeployOptions) -> tuple[list[dict], list[dict]]:
    """Writable emptyDirs on a read-only root: S3 copies, /tmp, /dev/shm, TensorRT caches."""
    volumes: list[dict[str, Any]] = [
        {"name": "s3-copies", "emptyDir": {"sizeLimit": options.model_cache_size}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "s3-copies", "mountPath": S3_MOUNT},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    for i, path in enumerate(sorted({m.trt_cache_path for m in models if m.trt_cache_path})):
        volumes.append({"name": f"trt-cache-{i}", "emptyDir": {"sizeLimit": "10Gi"}})
        mounts.append({"name": f"trt-cache-{i}", "mountPath": path})
    return volumes, mounts


def _resources(models: list[ModelSummary], options: DeployOptions) -> dict[str, Any]:
    requests: dict[str, Any] = {"cpu": options.cpu, "memory": options.memory}
    limits: dict[str, Any] = {"memory": options.memory}
    if any(m.gpu for m in models):
        limits["nvidia.com/gpu"] = str(options.gpus)
    return {"requests": requests, "limits": limits}


def deployment(repository: str, models: list[ModelSummary], options: DeployOptions) -> dict[str, Any]:
    volumes, mounts = _volumes(models, options)
    gpu = any(m.gpu for m in models)
    container = {
        "name": "tritonserver",
        "image": options.container_image,
        "imagePullPolicy": "Always",
        "command": ["tritonserver"],
        "args": triton_args(repository, models, options),
        "ports": [
            {"name": "http", "containerPort": options.http_port, "protocol": "TCP"},
            {"name": "grpc", "containerPort": options.grpc_port, "protocol": "TCP"},
            {"name": "metrics", "containerPort": options.metrics_port, "protocol": "TCP"},
        ],
        "env": [
            *_s3_env(options),
            {"name": "TRITON_AWS_MOUNT_DIRECTORY", "value": S3_MOUNT},
            {"name": "HOME", "value": "/tmp"},
            {"name": "TRITON_ADMIN_KEY",
             "valueFrom": {"secretKeyRef": {"name": options.admin_secret, "key": "admin-key"}}},
        ],
        "resources": _resources(models, options),
        "startupProbe": _probe("/v2/health/ready", STARTUP_PERIOD_SECS, STARTUP_FAILURES),
        "readinessProbe": _probe("/v2/health/ready", READINESS_PERIOD_SECS, READINESS_FAILURES),
        "livenessProbe": _probe("/v2/health/live", LIVENESS_PERIOD_SECS, LIVENESS_FAILURES, timeout=5),
        "securityContext": _container_security(),
        "volumeMounts": mounts,
    }
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": _pod_security(),
        "terminationGracePeriodSeconds": options.exit_timeout_secs + 15,
        "containers": [container],
        "volumes": volumes,
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [{
                    "weight": 100,
                    "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                        "labelSelector": {"matchLabels": _selector(options)}},
                }]
            }
        },
    }
    if gpu:
        pod_spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(options.metrics_port),
        "prometheus.io/path": "/metrics",
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(options, annotations=_checkov_skips(*_POD_SKIPS)),
        "spec": {
            "replicas": options.replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": _selector(options)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": _labels(options), "annotations": annotations},
                "spec": pod_spec,
            },
        },
    }


def service(options: DeployOptions) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(options),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(options),
            "ports": [
                {"name": "http", "port": options.http_port, "targetPort": "http", "protocol": "TCP",
                 "appProtocol": "http"},
                {"name": "grpc", "port": options.grpc_port, "targetPort": "grpc", "protocol": "TCP",
                 "appProtocol": "grpc"},
                {"name": "metrics", "port": options.metrics_port, "targetPort": "metrics", "protocol": "TCP",
                 "appProtocol": "http"},
            ],
        },
    }


#: The custom metric the autoscaler reads (per pod), exported by a metrics adapter from Triton's
#: ``nv_inference_pending_request_count`` gauge (see docs/deploy.md for the adapter rule).
INFLIGHT_METRIC = "nv_inference_pending_request_count"


def autoscaler(models: list[ModelSummary], options: DeployOptions) -> dict[str, Any]:
    metrics: list[dict[str, Any]] = []
    if options.hpa_metric == "inflight":
        metrics.append({
            "type": "Pods",
            "pods": {"metric": {"name": INFLIGHT_METRIC},
                     "target": {"type": "AverageValue", "averageValue": str(inflight_target(models))}},
        })  # fmt: skip
    metrics.append({
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization",
                                               "averageUtilization": options.cpu_target_percent}},
    })  # fmt: skip
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(options),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": options.name},
            "minReplicas": options.min_replicas,
            "maxReplicas": options.max_replicas,
            "metrics": metrics,
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 0,
                            "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]},
                "scaleDown": {"stabilizationWindowSeconds": 300,
                              "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}]},
            },
        },
    }


def disruption_budget(options: DeployOptions) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(options),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _selector(options)}},
    }
