"""Kubernetes and KServe manifests, validated offline (no cluster, no GPU here).

Every generated object is loaded into the official ``kubernetes`` client's models (and the
``kserve`` SDK's, in a subprocess) by a strict walker that fails on unknown or missing required
fields; checkov's Kubernetes checks run on the files (from their own virtual environment,
``.venv-checkov``, made by ``make checkov-venv``); probes, ports and the autoscaler are checked
against the tritonserver flags of the same Deployment and of the local server.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
import subprocess
import sys

import onnx
import pytest
import yaml

import triton_repo
from triton_repo import _deploy, _deploy_models, _deploy_options, _deploy_workload, _kserve
from triton_repo._server import ADMIN_HEADER, RESTRICTED_APIS

from .k8s_validate import ValidationError, validate_file, validate_object
from .scale_helpers import layer_model

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
URL = "s3://pixeldcn-models/prod"
OPTIONS = _deploy_options.DeployOptions(
    ingress_host="infer.example.com", service_monitor=True, tls_secret="infer-tls"
)


@pytest.fixture(scope="module")
def local_repo(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """Two models: U-Net-like on GPU with TensorRT and an engine cache, a small one on CPU."""
    folder = tmp_path_factory.mktemp("deploy")
    onnx.save(layer_model(1), folder / "a.onnx")
    repo = folder / "repo"
    gpu = triton_repo.ServingOptions(
        kind="gpu", max_batch_size=8, instances=2, tensorrt=True, fp16=True,
        trt_cache_path="/var/cache/trt/unet", warmup_shape=(3, 512, 512),
    )  # fmt: skip
    triton_repo.write_repository(repo, "unet", folder / "a.onnx", options=gpu)
    cpu = triton_repo.ServingOptions(kind="cpu")
    triton_repo.write_repository(repo, "small", folder / "a.onnx", options=cpu)
    return repo


@pytest.fixture(scope="module")
def manifests(local_repo: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("manifests")
    models = _deploy_models.read_models(local_repo)
    _deploy.write_manifests(out / "k8s", _deploy.kubernetes_manifests(URL, models, OPTIONS))
    _deploy.write_manifests(out / "kserve", _kserve.kserve_manifests(URL, models, OPTIONS))
    return out


def _objects(folder: pathlib.Path) -> dict[str, dict]:
    found = {}
    for path in sorted(folder.glob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            found[f"{obj['kind']}/{obj['metadata']['name']}"] = obj
    return found


def test_models_are_read_from_their_configs(local_repo: pathlib.Path) -> None:
    models = {m.name: m for m in _deploy_models.read_models(local_repo)}
    assert models["unet"].gpu and models["unet"].instances == 2 and models["unet"].max_batch_size == 8
    assert models["unet"].trt_cache_path == "/var/cache/trt/unet"
    assert not models["small"].gpu and models["small"].trt_cache_path is None
    text = (local_repo / "unet" / "config.pbtxt").read_text()
    limit = triton_repo.config_from_text(text).parameters["max_request_bytes"].string_value
    assert models["unet"].max_request_bytes == int(limit) > 8 * 3 * 512 * 512 * 4 - 1


def test_every_object_loads_into_the_official_kubernetes_models(manifests: pathlib.Path) -> None:
    files = sorted((manifests / "k8s").glob("*.yaml"))
    names = {p.name for p in files}
    assert names == {"00-namespace.yaml", "10-deployment.yaml", "10-network-policy.yaml",
                     "10-service.yaml", "10-autoscaler.yaml", "10-disruption-budget.yaml",
                     "10-ingress.yaml", "10-service-monitor.yaml"}
    counts = {p.name: len(validate_file(str(p))) for p in files}
    assert counts["10-ingress.yaml"] == 2 and sum(counts.values()) == 9
    optional = manifests / "k8s" / "optional" / "ingress-nginx-controller-settings.yaml"
    (settings,) = validate_file(str(optional))
    assert settings.data["client-header-timeout"] == "10" and settings.data["keep-alive"] == "75"
    deployment = validate_file(str(manifests / "k8s" / "10-deployment.yaml"))[0]
    assert type(deployment).__name__ == "V1Deployment"
    assert deployment.spec.template.spec.containers[0].security_context.read_only_root_filesystem is True


def test_the_validator_fails_on_unknown_and_missing_fields(manifests: pathlib.Path) -> None:
    obj = yaml.safe_load((manifests / "k8s" / "10-deployment.yaml").read_text())
    obj["spec"]["replica"] = 3  # a typo the client's from_dict would drop silently
    unknown = r"Deployment/pixeldcn-triton.spec: unknown field\(s\) \['replica'\]"
    with pytest.raises(ValidationError, match=unknown):
        validate_object(obj)
    obj = yaml.safe_load((manifests / "k8s" / "10-deployment.yaml").read_text())
    del obj["spec"]["template"]["spec"]["containers"][0]["name"]
    with pytest.raises(ValidationError, match=r"containers\[0\]: V1Container: (?s:.*)name\s+Field required"):
        validate_object(obj)
    obj = yaml.safe_load((manifests / "k8s" / "10-service.yaml").read_text())
    obj["spec"]["ports"][0]["port"] = "8000"
    with pytest.raises(ValidationError, match=r"ports\[0\].port: expected int, got str"):
        validate_object(obj)


def test_inference_service_loads_into_the_kserve_models_in_a_subprocess(manifests: pathlib.Path) -> None:
    # kserve and tritonclient clash on a protobuf symbol in one process.
    paths = sorted(str(p) for p in (manifests / "kserve").glob("*.yaml"))
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "k8s_validate.py"), "--kserve", *paths],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "validated 4 objects" in done.stdout  # Namespace, ServiceAccount, InferenceService, policy
    service = _objects(manifests / "kserve")["InferenceService/pixeldcn-triton"]
    triton = service["spec"]["predictor"]["triton"]
    assert triton["storageUri"] == URL and triton["runtimeVersion"] == "24.10-py3"
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == "1"


KSERVE_PORTS = """
import json
from kserve.constants import constants
print(json.dumps({"http": constants.DEFAULT_HTTP_PORT}))
"""


def test_kserve_probes_and_policy_use_the_runtime_ports(manifests: pathlib.Path) -> None:
    # KServe's Triton runtime listens on 8080 (kserve's DEFAULT_HTTP_PORT; gRPC 9000 in its
    # runtime args) and names no container port: a probe on port "http" never succeeds.
    done = subprocess.run([sys.executable, "-c", KSERVE_PORTS], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["http"] == _kserve.KSERVE_HTTP_PORT == 8080
    objs = _objects(manifests / "kserve")
    service = objs["InferenceService/pixeldcn-triton"]
    triton = service["spec"]["predictor"]["triton"]
    for probe, path in (("startupProbe", "/v2/health/ready"), ("readinessProbe", "/v2/health/ready"),
                        ("livenessProbe", "/v2/health/live")):  # fmt: skip
        assert triton[probe]["httpGet"] == {"path": path, "port": 8080}
    flags = _flags(triton["args"])
    assert "http-port" not in flags and "grpc-port" not in flags  # the runtime's own
    policy = objs["NetworkPolicy/pixeldcn-triton"]["spec"]
    assert policy["podSelector"] == {"matchLabels": {"serving.kserve.io/inferenceservice": "pixeldcn-triton"}}
    ports = {p["port"] for p in policy["ingress"][0]["ports"]}
    assert ports == {8080, 9000, int(flags["metrics-port"])}
    # the same restricted APIs behind the same header as the Deployment flavour and the local server
    restricted = f"{','.join(RESTRICTED_APIS)}:{ADMIN_HEADER}=$(TRITON_ADMIN_KEY)"
    assert flags["http-restricted-api"] == flags["grpc-restricted-protocol"] == restricted
    env = {e["name"]: e for e in triton["env"]}
    assert env["TRITON_ADMIN_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "pixeldcn-triton-admin", "key": "admin-key"}
    assert "value" not in env["TRITON_ADMIN_KEY"]


def _apply_in_order(folder: pathlib.Path) -> list[str]:
    """What `kubectl apply -f FOLDER` does: files in lexical order, objects in file order; fails
    like the API server on an object whose namespace or service account does not exist yet."""
    created: set[tuple[str, str]] = set()
    applied = []
    for path in sorted(folder.glob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            meta = obj["metadata"]
            ns = meta.get("namespace")
            assert ns is None or ("Namespace", ns) in created, f"{path.name}: namespace {ns} not found"
            account = obj.get("spec", {}).get("predictor", {}).get("serviceAccountName")
            assert account is None or ("ServiceAccount", account) in created, (
                f"{path.name}: service account {account} not found")
            created.add((obj["kind"], meta["name"]))
            applied.append(f"{obj['kind']}/{meta['name']}")
    return applied


def test_one_kubectl_apply_creates_the_namespace_first(manifests: pathlib.Path) -> None:
    for flavour in ("k8s", "kserve"):
        applied = _apply_in_order(manifests / flavour)
        assert applied[0] == "Namespace/pixeldcn", flavour
    assert _apply_in_order(manifests / "kserve") == [
        "Namespace/pixeldcn", "ServiceAccount/pixeldcn-triton-s3",
        "InferenceService/pixeldcn-triton", "NetworkPolicy/pixeldcn-triton"]


def test_s3_endpoint_with_credentials_is_refused_and_never_written(
    local_repo: pathlib.Path, tmp_path: pathlib.Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    from pixeldcn_core.cli import main

    secret = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY"
    with pytest.raises(triton_repo.ConfigError, match=r"s3_endpoint holds credentials"):
        _deploy_options.DeployOptions(s3_endpoint=f"http://AKIA:{secret}@minio:9000")
    for bad, message in (("ftp://minio:9000", "expected http"), ("http://minio:9000/bucket", "nothing else"),
                         ("http://minio:notaport", "expected http"), ("http://", "expected http")):
        with pytest.raises(triton_repo.ConfigError, match=message):
            _deploy_options.DeployOptions(s3_endpoint=bad)
    out = tmp_path / "ks"
    code = main(["deploy", "kubernetes", "--repository", URL, "--models-from", str(local_repo),
                 "--out", str(out), "--kserve", "--s3-endpoint", f"http://AKIA:{secret}@minio:9000"])
    err = capsys.readouterr().err
    assert code == 2 and "s3_endpoint holds credentials" in err and secret not in err
    assert not out.exists()
    ok = _kserve.kserve_manifests(URL, _deploy_models.read_models(local_repo),
                                  _deploy_options.DeployOptions(s3_endpoint="http://minio.storage:9000"))
    account = ok["05-service-account.yaml"][0]
    assert account["metadata"]["annotations"]["serving.kserve.io/s3-endpoint"] == "minio.storage:9000"
    assert account["metadata"]["annotations"]["serving.kserve.io/s3-usehttps"] == "0"


def _flags(args: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)


def test_probes_ports_and_autoscaler_agree_with_the_server_flags(manifests: pathlib.Path) -> None:
    objs = _objects(manifests / "k8s")
    deployment = objs["Deployment/pixeldcn-triton"]
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    flags = _flags(container["args"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": int(flags["http-port"]), "grpc": int(flags["grpc-port"]),
                     "metrics": int(flags["metrics-port"])}  # fmt: skip
    for probe, path in (("startupProbe", "/v2/health/ready"), ("readinessProbe", "/v2/health/ready"),
                        ("livenessProbe", "/v2/health/live")):  # fmt: skip
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}  # the --http-port
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == flags["metrics-port"]
    service = objs["Service/pixeldcn-triton"]
    assert {p["name"]: ports[p["targetPort"]] for p in service["spec"]["ports"]} == ports
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    monitor = objs["ServiceMonitor/pixeldcn-triton"]
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    hpa = objs["HorizontalPodAutoscaler/pixeldcn-triton"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "pixeldcn-triton"}
    assert hpa["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["maxReplicas"]
    inflight = hpa["metrics"][0]["pods"]
    assert inflight["metric"]["name"] == "nv_inference_pending_request_count"
    assert inflight["target"]["averageValue"] == str(8 * 2)  # unet: max_batch_size x instances
    assert hpa["metrics"][1]["resource"]["name"] == "cpu"  # the fallback without an adapter
    assert objs["PodDisruptionBudget/pixeldcn-triton"]["spec"]["selector"]["matchLabels"].items() <= (
        pod["metadata"]["labels"].items()
    )
    for name in ("http", "grpc"):
        backend = objs[f"Ingress/pixeldcn-triton-{name}"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]
        assert backend["service"] == {"name": "pixeldcn-triton", "port": {"name": name}}
    # Same server behaviour as the local server: strict readiness, no auto-completed configs,
    # the same restricted APIs behind the same header, polling.
    assert flags["strict-readiness"] == "true" and "--disable-auto-complete-config" in container["args"]
    assert flags["http-restricted-api"] == f"{','.join(RESTRICTED_APIS)}:{ADMIN_HEADER}=$(TRITON_ADMIN_KEY)"
    assert flags["model-repository"] == URL and flags["model-control-mode"] == "poll"
    assert container["image"] == "nvcr.io/nvidia/tritonserver:24.10-py3"  # Triton 2.51
    # The grace period covers Triton's own exit timeout.
    assert pod["spec"]["terminationGracePeriodSeconds"] > int(flags["exit-timeout-secs"])


def test_readiness_probe_rides_out_the_version_swap_blip(manifests: pathlib.Path) -> None:
    deployment = _objects(manifests / "k8s")["Deployment/pixeldcn-triton"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ready = container["readinessProbe"]
    poll_secs = int(_flags(container["args"])["repository-poll-secs"])
    # One blip (READINESS_BLIP_SECS, on every replica at once) fails at most this many probes
    # in a row: fewer than failureThreshold, so no replica leaves the Service for it...
    misses = math.ceil(_deploy_options.READINESS_BLIP_SECS / ready["periodSeconds"])
    assert misses < ready["failureThreshold"]
    # ...and two blips (one per poll at most) never fall into one failure window.
    assert poll_secs > ready["periodSeconds"] * ready["failureThreshold"]
    # A replica that truly cannot serve is out within period x threshold (+ timeout).
    assert ready["periodSeconds"] * ready["failureThreshold"] + ready["timeoutSeconds"] <= 15
    with pytest.raises(triton_repo.ConfigError, match=r"poll_secs=5; expected > 20"):
        _deploy_options.DeployOptions(poll_secs=5)


def test_read_only_root_leaves_triton_writable_folders(manifests: pathlib.Path) -> None:
    spec = _objects(manifests / "k8s")["Deployment/pixeldcn-triton"]["spec"]["template"]["spec"]
    container = spec["containers"][0]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]} and security["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["automountServiceAccountToken"] is False
    empty_dirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
    writable = {m["mountPath"] for m in container["volumeMounts"] if m["name"] in empty_dirs}
    env = {e["name"]: e for e in container["env"]}
    assert env["TRITON_AWS_MOUNT_DIRECTORY"]["value"] in writable  # Triton's copies of S3 models
    assert {"/tmp", "/dev/shm", "/var/cache/trt/unet"} <= writable  # TensorRT cache from the config
    # Credentials only from the Secret, never inline.
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "value" not in env[var] and env[var]["valueFrom"]["secretKeyRef"]["name"] == "pixeldcn-s3"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"  # unet runs on GPU


def test_ingress_limits_come_from_the_model(manifests: pathlib.Path, local_repo: pathlib.Path) -> None:
    models = _deploy_models.read_models(local_repo)
    largest = max(m.max_request_bytes or 0 for m in models)
    for name, grpc in (("http", False), ("grpc", True)):
        notes = _objects(manifests / "k8s")[f"Ingress/pixeldcn-triton-{name}"]["metadata"]["annotations"]
        size = notes["nginx.ingress.kubernetes.io/proxy-body-size"]
        assert size == f"{math.ceil((largest + (64 << 10)) / (1 << 20))}m"
        assert notes["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "60"
        assert notes["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "60"
        assert (notes.get("nginx.ingress.kubernetes.io/backend-protocol") == "GRPC") is grpc


def test_cpu_only_models_ask_for_no_gpu(local_repo: pathlib.Path) -> None:
    models = [m for m in _deploy_models.read_models(local_repo) if not m.gpu]
    deployment = _deploy_workload.deployment(URL, models, _deploy_options.DeployOptions())
    spec = deployment["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in spec["containers"][0]["resources"]["limits"]
    assert "tolerations" not in spec and "--allow-gpu-metrics=false" in spec["containers"][0]["args"]
    explicit = _deploy_workload.triton_args(
        URL, models, _deploy_options.DeployOptions(model_control="explicit")
    )
    assert "--model-control-mode=explicit" in explicit and "--load-model=small" in explicit
    minio = _deploy_workload.triton_args(
        URL, models, _deploy_options.DeployOptions(s3_endpoint="http://minio.storage:9000")
    )
    assert "--model-repository=s3://minio.storage:9000/pixeldcn-models/prod" in minio


def test_deploy_options_reject_bad_values() -> None:
    with pytest.raises(triton_repo.ConfigError, match=r"name='Bad_Name'; expected a DNS label"):
        _deploy_options.DeployOptions(name="Bad_Name")
    with pytest.raises(triton_repo.ConfigError, match=r"triton_version='1.0'; expected one of"):
        _deploy_options.DeployOptions(triton_version="1.0")
    with pytest.raises(triton_repo.ConfigError, match=r"min_replicas=5 > max_replicas=2"):
        _deploy_options.DeployOptions(min_replicas=5, max_replicas=2)
    with pytest.raises(triton_repo.ConfigError, match=r"memory='lots'; expected a Kubernetes quantity"):
        _deploy_options.DeployOptions(memory="lots")
    with pytest.raises(triton_repo.ConfigError, match=r"ports \(8000, 8000, 8002\)"):
        _deploy_options.DeployOptions(grpc_port=8000)
    assert _deploy_options.triton_image("2.55.0") == "nvcr.io/nvidia/tritonserver:25.02-py3"


def test_yaml_is_emitted_by_a_yaml_library_and_round_trips(local_repo: pathlib.Path) -> None:
    files = _deploy.kubernetes_manifests(URL, _deploy_models.read_models(local_repo), OPTIONS)
    for objects in files.values():
        assert list(yaml.safe_load_all(_deploy.to_yaml(objects))) == objects


def test_deploy_command(local_repo: pathlib.Path, tmp_path: pathlib.Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from pixeldcn_core.cli import main

    out = tmp_path / "out"
    code = main(["deploy", "kubernetes", "--repository", URL, "--models-from", str(local_repo),
                 "--out", str(out), "--ingress-host", "infer.example.com", "--replicas", "3"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "kubectl apply -f" in capsys.readouterr().out
    assert _objects(out)["Deployment/pixeldcn-triton"]["spec"]["replicas"] == 3
    assert main(["deploy", "kubernetes", "--repository", URL, "--models-from", str(local_repo),
                 "--out", str(tmp_path / "ks"), "--kserve"]) == 0  # fmt: skip
    assert (tmp_path / "ks" / "10-inference-service.yaml").is_file()
    capsys.readouterr()
    for argv, message in (
        (["--repository", "/local/folder"], "expected s3://BUCKET/PREFIX"),
        (["--repository", URL, "--name", "Bad_Name"], "name='Bad_Name'; expected a DNS label"),
        (["--repository", URL, "--poll-secs", "5"], "poll_secs=5"),
        (["--repository", URL, "--models-from", str(tmp_path / "none")], "is not a folder"),
    ):
        argv = ["deploy", "kubernetes", "--out", str(tmp_path / "x"), *argv]
        if "--models-from" not in argv:
            argv += ["--models-from", str(local_repo)]
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err


@pytest.mark.skipif(
    not CHECKOV.is_file(),
    reason="checkov runs from its own environment (it downgrades boto3): create it with "
    "`make checkov-venv` (.ci/run and `make test` do)",
)
def test_checkov_kubernetes_checks_pass(manifests: pathlib.Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BC_"))}
    done = subprocess.run(
        [str(CHECKOV), "-d", str(manifests / "k8s"), "--framework", "kubernetes", "--skip-download",
         "--compact", "-o", "json"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    report = json.loads(done.stdout)
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0, failed
    assert summary["passed"] >= 80
    skipped = report["results"]["skipped_checks"]
    assert {c["check_id"] for c in skipped} == {"CKV_K8S_11", "CKV_K8S_35", "CKV_K8S_43"}
    for check in skipped:  # every skip carries its justification
        assert len(check["check_result"].get("suppress_comment", "")) > 40, check["check_id"]
    notes = _objects(manifests / "k8s")["Deployment/pixeldcn-triton"]["metadata"]["annotations"]
    assert any(re.fullmatch(r"CKV_K8S_43=.+digest.+", v) for v in notes.values())
