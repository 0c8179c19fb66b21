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
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ._config import MAX_REQUEST_BYTES_KEY, config_from_text
from ._errors import ConfigError, TritonNotInstalledError
from ._s3 import S3Location, is_s3_url, triton_url_for
from ._server import ADMIN_HEADER, RESTRICTED_APIS

__all__ = [
    "BUNDLED_TRITON_VERSION",
    "KSERVE_GRPC_PORT",
    "KSERVE_HTTP_PORT",
    "READINESS_BLIP_SECS",
    "TRITON_CONTAINERS",
    "DeployOptions",
    "ModelSummary",
    "kubernetes_manifests",
    "read_models",
    "triton_image",
    "write_manifests",
]

#: The Triton version of the tritonserver the local flavour was tested with (nvidia-pytriton).
BUNDLED_TRITON_VERSION = "2.51"
#: Triton server version -> NGC container release (``nvcr.io/nvidia/tritonserver:<YY.MM>-py3``),
#: from the release notes of each container (one Triton minor version per monthly release).
TRITON_CONTAINERS = {
    "2.44": "24.03", "2.45": "24.04", "2.46": "24.05", "2.47": "24.06", "2.48": "24.07",
    "2.49": "24.08", "2.50": "24.09", "2.51": "24.10", "2.52": "24.11", "2.53": "24.12",
    "2.54": "25.01", "2.55": "25.02",
}  # fmt: skip
#: Seconds ``/v2/health/ready`` reads false at a version swap with strict readiness, on every
#: replica at once, while the old version keeps answering: about 1.6 s measured with Triton 2.51
#: from S3, up to 3.9 s on this loaded machine (docs/triton.md). The readiness probe must not turn
#: a replica unready for it.
READINESS_BLIP_SECS = 3.9
#: Ports of KServe's Triton runtime (ClusterServingRuntime ``kserve-tritonserver``: its args
#: ``--http-port=8080 --grpc-port=9000``; 8080 is ``kserve.constants.DEFAULT_HTTP_PORT``). The
#: runtime's container ports carry no names, so KServe probes and policies use the numbers.
KSERVE_HTTP_PORT = 8080
KSERVE_GRPC_PORT = 9000
#: The label KServe puts on every pod of an InferenceService (its name as value).
KSERVE_POD_LABEL = "serving.kserve.io/inferenceservice"
#: Manifest file names, prefixed so that ``kubectl apply -f DIR`` (files in lexical order)
#: creates the Namespace and the ServiceAccount before the objects that live in them.
ORDER_PREFIX = {"namespace": "00", "service-account": "05"}
S3_MOUNT = "/var/lib/triton/s3"  # Triton's copies of S3 models (TRITON_AWS_MOUNT_DIRECTORY)
_DNS_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_QUANTITY_RE = re.compile(r"[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?")
_RUN_AS = 10001  # an unprivileged UID that no host account shares (the image's files are world-readable)


def _yaml() -> Any:
    try:
        import yaml
    except ImportError as exc:
        raise TritonNotInstalledError(
            "writing manifests needs PyYAML; install it with: pip install 'pixeldcn[deploy]'"
        ) from exc
    return yaml


def triton_image(version: str) -> str:
    """``nvcr.io/nvidia/tritonserver:<YY.MM>-py3`` for Triton ``version`` (``"2.51"``)."""
    key = ".".join(str(version).split(".")[:2])
    if key not in TRITON_CONTAINERS:
        raise ConfigError(
            f"triton_version={version!r}; expected one of {sorted(TRITON_CONTAINERS)} (or give the "
            "image explicitly)"
        )
    return f"nvcr.io/nvidia/tritonserver:{TRITON_CONTAINERS[key]}-py3"


# ---------------------------------------------------------------------------- the models


@dataclasses.dataclass(frozen=True)
class ModelSummary:
    """What the manifests need from one model's production config.

    Attributes:
        name: the model.
        gpu: ``instance_group`` is ``KIND_GPU``.
        instances: instances per device.
        max_batch_size: 0 for a model without batching.
        max_request_bytes: the config's ``max_request_bytes`` parameter (None: unset).
        trt_cache_path: TensorRT engine cache folder (needs a writable volume), or None.
    """

    name: str
    gpu: bool
    instances: int
    max_batch_size: int
    max_request_bytes: int | None
    trt_cache_path: str | None

    @classmethod
    def from_config_text(cls, text: str) -> ModelSummary:
        config = config_from_text(text)
        if not config.name:
            raise ConfigError("a config.pbtxt names no model (name: ...); expected the model's config")
        groups = list(config.instance_group) or []
        gpu = any(g.kind == 1 for g in groups) or not groups  # KIND_GPU = 1; Triton's default: GPU
        instances = max((g.count or 1 for g in groups), default=1)
        limit = ""
        if MAX_REQUEST_BYTES_KEY in config.parameters:
            limit = config.parameters[MAX_REQUEST_BYTES_KEY].string_value
        cache = None
        for accelerator in config.optimization.execution_accelerators.gpu_execution_accelerator:
            cache = accelerator.parameters.get("trt_engine_cache_path") or cache
        try:
            max_request_bytes = int(limit) if limit else None
        except ValueError:
            raise ConfigError(f"model {config.name!r}: parameter {MAX_REQUEST_BYTES_KEY} is "
                              f"{limit!r}; expected an integer number of bytes") from None
        return cls(config.name, gpu, instances, int(config.max_batch_size), max_request_bytes, cache)


def read_models(source: str | os.PathLike[str], *, client: Any = None) -> list[ModelSummary]:
    """The models of a repository: a local folder or ``s3://BUCKET/PREFIX`` (read with boto3)."""
    texts: list[str] = []
    if is_s3_url(source):
        from ._s3 import s3_client
        from ._s3_repository import list_repository

        location = S3Location.parse(str(source))
        client = client or s3_client()
        for name, model in list_repository(str(source), client=client).items():
            if model.policy == "no config":
                continue
            body = client.get_object(Bucket=location.bucket, Key=location.key(name, "config.pbtxt"))["Body"]
            texts.append(_utf8(body.read(), location.key(name, "config.pbtxt")))
    else:
        folder = pathlib.Path(source)
        if not folder.is_dir():
            raise ConfigError(f"model repository {str(source)!r} is not a folder or an s3:// URL")
        texts = [_utf8(p.read_bytes(), str(p)) for p in sorted(folder.glob("*/config.pbtxt"))]
    if not texts:
        raise ConfigError(f"model repository {str(source)!r} holds no model (no */config.pbtxt)")
    return [ModelSummary.from_config_text(t) for t in texts]


def _utf8(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


# ---------------------------------------------------------------------------- options


def _check_endpoint(url: object) -> None:
    """``s3_endpoint`` is ``http(s)://host[:port]``: credentials in it would be written in plain
    text into the manifests (they belong in the Secret ``s3_secret``)."""
    import urllib.parse

    if not isinstance(url, str):
        raise ConfigError(f"s3_endpoint={url!r}; expected http(s)://host[:port]")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as exc:
        raise ConfigError(f"s3_endpoint: {exc}; expected http(s)://host[:port]") from None
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            "s3_endpoint holds credentials (USER:SECRET@); expected http(s)://host[:port] with the "
            "keys in the Secret named by s3_secret (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment:
        shown = urllib.parse.urlunsplit((parts.scheme, parts.hostname or "", parts.path, "", ""))
        raise ConfigError(f"s3_endpoint={shown!r}; expected http(s)://host[:port] and nothing else")


def _check_quantity(field: str, value: str) -> str:
    if not isinstance(value, str) or not _QUANTITY_RE.fullmatch(value):
        raise ConfigError(f"{field}={value!r}; expected a Kubernetes quantity such as '2', '500m', '8Gi'")
    return value


def _check_positive(field: str, value: object, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (hi is not None and value > hi):
        raise ConfigError(f"{field}={value!r}; expected an integer in [1, {hi or 'inf'}]")
    return value


@dataclasses.dataclass(frozen=True)
class DeployOptions:
    """What the cluster side adds to the models' own serving options.

    Attributes:
        name: name of every object (a DNS label).
        namespace: namespace (written as a Namespace enforcing the "restricted" Pod Security
            Standard), or None to leave it to ``kubectl -n``.
        triton_version: Triton version; picks the image (see :data:`TRITON_CONTAINERS`).
        image: the image, overriding ``triton_version`` (pin a digest here).
        replicas, min_replicas, max_replicas: Deployment and autoscaler bounds.
        gpus: ``nvidia.com/gpu`` per pod when any model runs on GPU.
        cpu, memory: container requests (memory also the limit).
        model_control: ``"poll"`` (new versions in the bucket are loaded) or ``"explicit"``.
        poll_secs: repository poll interval for ``"poll"``.
        http_port, grpc_port, metrics_port: container ports (also the Service's).
        s3_secret: Secret holding ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (and
            optionally ``AWS_DEFAULT_REGION``); referenced, never written.
        s3_endpoint: ``http(s)://host:port`` of MinIO/Ceph; None for AWS.
        admin_secret: Secret holding ``admin-key``, the header value that unlocks Triton's
            model-repository, shared-memory, logging and trace APIs.
        model_cache_size: size limit of the volume Triton copies S3 models into.
        ingress_host: host name of the Ingress; None writes no Ingress.
        ingress_class: ``ingressClassName``.
        tls_secret: TLS Secret of the Ingress (gRPC through ingress-nginx needs TLS/HTTP2).
        request_timeout_secs: Ingress read/send timeouts (a request's upper bound).
        service_monitor: also write a Prometheus-operator ServiceMonitor.
        hpa_metric: ``"inflight"`` (Triton's pending requests through a custom metrics adapter,
            CPU as a second metric) or ``"cpu"`` (CPU only, no adapter needed).
        cpu_target_percent: CPU utilisation target of the autoscaler.
        exit_timeout_secs: Triton's ``--exit-timeout-secs`` (in-flight requests at shutdown).
    """

    name: str = "pixeldcn-triton"
    namespace: str | None = "pixeldcn"
    triton_version: str = BUNDLED_TRITON_VERSION
    image: str | None = None
    replicas: int = 2
    min_replicas: int = 2
    max_replicas: int = 8
    gpus: int = 1
    cpu: str = "4"
    memory: str = "16Gi"
    model_control: str = "poll"
    poll_secs: int = 30
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    s3_secret: str = "pixeldcn-s3"
    s3_endpoint: str | None = None
    admin_secret: str = "pixeldcn-triton-admin"
    model_cache_size: str = "20Gi"
    ingress_host: str | None = None
    ingress_class: str = "nginx"
    tls_secret: str | None = None
    request_timeout_secs: int = 60
    service_monitor: bool = False
    hpa_metric: str = "inflight"
    cpu_target_percent: int = 80
    exit_timeout_secs: int = 30

    def __post_init__(self) -> None:
        for field in ("name", "s3_secret", "admin_secret"):
            value = getattr(self, field)
            if not isinstance(value, str) or not _DNS_LABEL_RE.fullmatch(value):
                raise ConfigError(
                    f"{field}={value!r}; expected a DNS label: 1-63 lower-case letters, digits, '-'"
                )
        if self.namespace is not None and not _DNS_LABEL_RE.fullmatch(self.namespace):
            raise ConfigError(f"namespace={self.namespace!r}; expected a DNS label")
        if self.image is None:
            triton_image(self.triton_version)  # validates the version
        _check_positive("replicas", self.replicas, 1000)
        _check_positive("min_replicas", self.min_replicas, 1000)
        _check_positive("max_replicas", self.max_replicas, 1000)
        if not self.min_replicas <= self.max_replicas:
            raise ConfigError(
                f"min_replicas={self.min_replicas} > max_replicas={self.max_replicas}; expected min <= max"
            )
        _check_positive("gpus", self.gpus, 16)
        _check_quantity("cpu", self.cpu)
        _check_quantity("memory", self.memory)
        _check_quantity("model_cache_size", self.model_cache_size)
        if self.model_control not in ("poll", "explicit"):
            raise ConfigError(f"model_control={self.model_control!r}; expected 'poll' or 'explicit'")
        _check_positive("poll_secs", self.poll_secs, 3600)
        ports = (self.http_port, self.grpc_port, self.metrics_port)
        for field, port in zip(("http_port", "grpc_port", "metrics_port"), ports, strict=True):
            _check_positive(field, port, 65535)
        if len(set(ports)) != 3:
            raise ConfigError(f"ports {ports}; expected three different ports")
        if self.hpa_metric not in ("inflight", "cpu"):
            raise ConfigError(f"hpa_metric={self.hpa_metric!r}; expected 'inflight' or 'cpu'")
        _check_positive("cpu_target_percent", self.cpu_target_percent, 100)
        _check_positive("request_timeout_secs", self.request_timeout_secs, 3600)
        if self.exit_timeout_secs < 0:
            raise ConfigError(f"exit_timeout_secs={self.exit_timeout_secs}; expected >= 0")
        if self.s3_endpoint is not None:
            _check_endpoint(self.s3_endpoint)
        host_re = r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?"
        if self.ingress_host is not None and not re.fullmatch(host_re, self.ingress_host):
            raise ConfigError(f"ingress_host={self.ingress_host!r}; expected a DNS name")
        if self.model_control == "poll" and self.poll_secs <= 2 * READINESS_PERIOD_SECS * READINESS_FAILURES:
            raise ConfigError(
                f"poll_secs={self.poll_secs}; expected > {2 * READINESS_PERIOD_SECS * READINESS_FAILURES} "
                "so that two readiness blips of version swaps never fall in one readiness window"
            )

    @property
    def container_image(self) -> str:
        return self.image or triton_image(self.triton_version)


# Probes. Readiness: a replica is taken out after READINESS_FAILURES misses in a row, so one
# version-swap blip (READINESS_BLIP_SECS, all replicas at once) never empties the Service.
READINESS_PERIOD_SECS = 5
READINESS_FAILURES = 2
LIVENESS_PERIOD_SECS = 10
LIVENESS_FAILURES = 3
STARTUP_PERIOD_SECS = 10
STARTUP_FAILURES = 90  # 15 min to copy models from S3 and build TensorRT engines


# ---------------------------------------------------------------------------- helpers


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


def _size_text(n: int) -> str:
    """Bytes as an nginx size, rounded up to MiB (``"5m"``)."""
    return f"{max(1, math.ceil(n / (1 << 20)))}m"


def body_limit_bytes(models: Iterable[ModelSummary], *, default: int = 64 << 20) -> int:
    """The Ingress request body limit: the largest model's ``max_request_bytes`` + 64 KiB of
    headers and framing (binary tensor protocol; JSON tensors are larger and not supported
    through the Ingress at that size)."""
    limits = [m.max_request_bytes for m in models if m.max_request_bytes]
    return (max(limits) if limits else default) + (64 << 10)


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


# ---------------------------------------------------------------------------- objects


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
