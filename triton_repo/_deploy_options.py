"""What the cluster side adds to the models' own serving options: :class:`DeployOptions` (replicas,
resources, ports, poll interval, Secret names, host names), validated field by field on
construction, and the Triton image for a Triton version (:data:`TRITON_CONTAINERS`, NGC release
notes: Triton 2.X ships in one monthly container).
"""

from __future__ import annotations

import dataclasses
import re

from ._errors import ConfigError

__all__ = [
    "BUNDLED_TRITON_VERSION",
    "READINESS_BLIP_SECS",
    "TRITON_CONTAINERS",
    "DeployOptions",
    "triton_image",
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

# Probes. Readiness: a replica is taken out after READINESS_FAILURES misses in a row, so one
# version-swap blip (READINESS_BLIP_SECS, all replicas at once) never empties the Service.
READINESS_PERIOD_SECS = 5
READINESS_FAILURES = 2
LIVENESS_PERIOD_SECS = 10
LIVENESS_FAILURES = 3
STARTUP_PERIOD_SECS = 10
STARTUP_FAILURES = 90  # 15 min to copy models from S3 and build TensorRT engines

_DNS_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_QUANTITY_RE = re.compile(r"[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?")


def triton_image(version: str) -> str:
    """``nvcr.io/nvidia/tritonserver:<YY.MM>-py3`` for Triton ``version`` (``"2.51"``)."""
    key = ".".join(str(version).split(".")[:2])
    if key not in TRITON_CONTAINERS:
        raise ConfigError(
            f"triton_version={version!r}; expected one of {sorted(TRITON_CONTAINERS)} (or give the "
            "image explicitly)"
        )
    return f"nvcr.io/nvidia/tritonserver:{TRITON_CONTAINERS[key]}-py3"


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
