"""KServe flavour of ``pixeldcn deploy kubernetes --kserve``: an InferenceService with the Triton
runtime on the bucket, its ServiceAccount, Namespace and NetworkPolicy (see docs/deploy.md)."""

from __future__ import annotations

from typing import Any

from ._deploy import _ordered
from ._deploy_models import ModelSummary
from ._deploy_network import namespace, network_policy
from ._deploy_options import (
    LIVENESS_FAILURES,
    LIVENESS_PERIOD_SECS,
    READINESS_FAILURES,
    READINESS_PERIOD_SECS,
    STARTUP_FAILURES,
    STARTUP_PERIOD_SECS,
    DeployOptions,
)
from ._deploy_workload import _container_security, _metadata, _pod_security, _probe, _resources
from ._errors import ConfigError
from ._s3 import S3Location
from ._server import ADMIN_HEADER, RESTRICTED_APIS

__all__ = ["KSERVE_GRPC_PORT", "KSERVE_HTTP_PORT", "KSERVE_POD_LABEL", "kserve_manifests"]

#: Ports of KServe's Triton runtime (ClusterServingRuntime ``kserve-tritonserver``: its args
#: ``--http-port=8080 --grpc-port=9000``; 8080 is ``kserve.constants.DEFAULT_HTTP_PORT``). The
#: runtime's container ports carry no names, so KServe probes and policies use the numbers.
KSERVE_HTTP_PORT = 8080
KSERVE_GRPC_PORT = 9000
#: The label KServe puts on every pod of an InferenceService (its name as value).
KSERVE_POD_LABEL = "serving.kserve.io/inferenceservice"


def kserve_manifests(
    repository: str, models: list[ModelSummary], options: DeployOptions | None = None
) -> dict[str, list[dict[str, Any]]]:
    """A KServe ``InferenceService`` with the Triton runtime on ``storageUri``, its ServiceAccount
    (which references the S3 Secret; KServe's storage initializer reads it), the Namespace and a
    NetworkPolicy, in files named in apply order.

    Probes and the policy use the runtime's port numbers (:data:`KSERVE_HTTP_PORT`,
    :data:`KSERVE_GRPC_PORT`); the model-repository, shared-memory, logging and trace APIs need
    the admin header, the key from the Secret ``admin_secret``, as in the Deployment flavour.

    KServe copies the repository into the pod at start (``/mnt/models``), so a new version
    takes a new revision (``kubectl apply`` again) instead of polling.
    """
    options = options or DeployOptions()
    location = S3Location.parse(repository)
    if not models:
        raise ConfigError("models is empty; expected the repository's models (read_models)")
    container_image = options.container_image
    runtime_version = container_image.rsplit(":", 1)[1] if ":" in container_image else None
    account = f"{options.name}-s3"
    annotations = {
        "serving.kserve.io/deploymentMode": "RawDeployment",
        "serving.kserve.io/autoscalerClass": "hpa",
        "serving.kserve.io/metric": "cpu",
        "serving.kserve.io/targetUtilizationPercentage": str(options.cpu_target_percent),
        "serving.kserve.io/enable-prometheus-scraping": "true",
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(options.metrics_port),
        "prometheus.io/path": "/metrics",
    }
    inference_service = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": _metadata(options, annotations=annotations),
        "spec": {
            "predictor": {
                "minReplicas": options.min_replicas,
                "maxReplicas": options.max_replicas,
                "serviceAccountName": account,
                "automountServiceAccountToken": False,
                "securityContext": _pod_security(),
                "triton": _triton_predictor(location, models, options, runtime_version),
            }
        },
    }
    policy = network_policy(
        options,
        selector={KSERVE_POD_LABEL: options.name},
        ports=(KSERVE_HTTP_PORT, KSERVE_GRPC_PORT, options.metrics_port),
    )
    files: dict[str, list[dict[str, Any]]] = {}
    if options.namespace:
        files["namespace.yaml"] = [namespace(options)]
    files |= {
        "service-account.yaml": [_service_account(options, account)],
        "inference-service.yaml": [inference_service],
        "network-policy.yaml": [policy],
    }
    return _ordered(files)


def _triton_predictor(
    location: S3Location, models: list[ModelSummary], options: DeployOptions, runtime_version: str | None
) -> dict[str, Any]:
    """The InferenceService's ``triton`` predictor: the bucket, server flags, probes, security."""
    restricted = f"{','.join(RESTRICTED_APIS)}:{ADMIN_HEADER}=$(TRITON_ADMIN_KEY)"  # as the local server
    probe_port = KSERVE_HTTP_PORT  # the runtime's container port has no name
    triton: dict[str, Any] = {
        "storageUri": location.url(),
        "args": [
            "--strict-readiness=true",
            f"--exit-timeout-secs={options.exit_timeout_secs}",
            "--disable-auto-complete-config",
            "--allow-metrics=true",
            f"--metrics-port={options.metrics_port}",
            f"--http-restricted-api={restricted}",
            f"--grpc-restricted-protocol={restricted}",
        ],
        "env": [
            {"name": "HOME", "value": "/tmp"},
            {"name": "TRITON_ADMIN_KEY",
             "valueFrom": {"secretKeyRef": {"name": options.admin_secret, "key": "admin-key"}}},
        ],
        "resources": _resources(models, options),
        "securityContext": _container_security(),
        "readinessProbe": _probe("/v2/health/ready", READINESS_PERIOD_SECS, READINESS_FAILURES,
                                 port=probe_port),
        "livenessProbe": _probe("/v2/health/live", LIVENESS_PERIOD_SECS, LIVENESS_FAILURES, timeout=5,
                                port=probe_port),
        "startupProbe": _probe("/v2/health/ready", STARTUP_PERIOD_SECS, STARTUP_FAILURES,
                               port=probe_port),
    }
    if runtime_version and options.image is None:
        triton["runtimeVersion"] = runtime_version
    return triton


def _service_account(options: DeployOptions, account: str) -> dict[str, Any]:
    """The ServiceAccount KServe's storage initializer reads the S3 Secret through."""
    account_annotations = {
        "serving.kserve.io/s3-endpoint": "s3.amazonaws.com",
        "serving.kserve.io/s3-usehttps": "1",
    }
    if options.s3_endpoint:
        import urllib.parse

        endpoint = urllib.parse.urlsplit(options.s3_endpoint)  # no credentials: DeployOptions checks
        host = endpoint.hostname or ""
        account_annotations = {
            "serving.kserve.io/s3-endpoint": f"{host}:{endpoint.port}" if endpoint.port else host,
            "serving.kserve.io/s3-usehttps": "1" if endpoint.scheme == "https" else "0",
        }
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(options, account, annotations=account_annotations),
        "automountServiceAccountToken": False,
        "secrets": [{"name": options.s3_secret}],
    }
