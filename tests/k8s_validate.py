"""Load Kubernetes / KServe objects into the official client models, strictly.

The generated clients' ``from_dict`` / deserialisation silently drop unknown fields, so this walks
the models itself: every key must be a field of the model (``attribute_map``), every value must
have the field's type (``openapi_types``), and each model is constructed with the client's own
validation on, which raises on a missing required field.

Used in-process for the ``kubernetes`` models and as a script for the ``kserve`` ones (kserve and
tritonclient clash on a protobuf symbol in one process)::

    python tests/k8s_validate.py [--kserve] FILE.yaml ...
"""

from __future__ import annotations

import sys
from typing import Any

#: (apiVersion, kind) -> model class name in kubernetes.client (or kserve with a "kserve:" prefix).
MODELS = {
    ("apps/v1", "Deployment"): "V1Deployment",
    ("v1", "Service"): "V1Service",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Namespace"): "V1Namespace",
    ("networking.k8s.io/v1", "NetworkPolicy"): "V1NetworkPolicy",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "V2HorizontalPodAutoscaler",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
    ("networking.k8s.io/v1", "Ingress"): "V1Ingress",
    ("serving.kserve.io/v1beta1", "InferenceService"): "kserve:V1beta1InferenceService",
}
#: CRDs without a client model: the fields they may hold, checked by hand.
SERVICE_MONITOR_ENDPOINT_FIELDS = {"port", "path", "interval", "scheme", "scrapeTimeout", "honorLabels"}


class ValidationError(ValueError):
    pass


def _resolve(name: str, *, kserve: bool) -> type:
    import kubernetes.client

    if kserve:
        import kserve as ks

        if hasattr(ks, name):
            return getattr(ks, name)
    if hasattr(kubernetes.client, name):
        return getattr(kubernetes.client, name)
    raise ValidationError(f"no client model named {name}")


def build(value: Any, type_name: str, path: str, *, kserve: bool = False) -> Any:
    """``value`` as an instance of the model ``type_name``, or raise naming ``path``."""
    if type_name.startswith("List["):  # newer generators spell the containers like typing
        type_name = "list[" + type_name[5:]
    if type_name.startswith("Dict["):
        type_name = "dict(" + type_name[5:-1] + ")"
    if type_name.startswith("list["):
        if not isinstance(value, list):
            raise ValidationError(f"{path}: expected a list ({type_name}), got {type(value).__name__}")
        inner = type_name[5:-1]
        return [build(v, inner, f"{path}[{i}]", kserve=kserve) for i, v in enumerate(value)]
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            raise ValidationError(f"{path}: expected a mapping ({type_name}), got {type(value).__name__}")
        inner = type_name[type_name.index(",") + 1 : -1].strip()
        return {k: build(v, inner, f"{path}.{k}", kserve=kserve) for k, v in value.items()}
    simple = {"str": str, "bool": bool, "float": (int, float), "datetime": str, "date": str}
    if type_name in simple:
        if not isinstance(value, simple[type_name]):
            raise ValidationError(f"{path}: expected {type_name}, got {type(value).__name__} {value!r}")
        return value
    if type_name == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"{path}: expected int, got {type(value).__name__} {value!r}")
        return value
    if type_name == "object":
        return value
    cls = _resolve(type_name, kserve=kserve)
    if not isinstance(value, dict):
        raise ValidationError(f"{path}: expected a {type_name} mapping, got {type(value).__name__}")
    by_json = {json: attr for attr, json in cls.attribute_map.items()}
    unknown = sorted(set(value) - set(by_json))
    if unknown:
        raise ValidationError(f"{path}: unknown field(s) {unknown} for {type_name}")
    kwargs = {
        by_json[key]: build(item, cls.openapi_types[by_json[key]], f"{path}.{key}", kserve=kserve)
        for key, item in value.items()
    }
    try:
        return cls(**kwargs)
    except ValueError as exc:  # the client's own validation: a required field is missing
        raise ValidationError(f"{path}: {type_name}: {exc}") from exc


def validate_object(obj: dict[str, Any], *, kserve: bool = False) -> Any:
    key = (obj.get("apiVersion"), obj.get("kind"))
    name = f"{key[1]}/{obj.get('metadata', {}).get('name')}"
    if key == ("monitoring.coreos.com/v1", "ServiceMonitor"):
        return _validate_service_monitor(obj, name)
    if key not in MODELS:
        raise ValidationError(f"{name}: no model for apiVersion/kind {key}")
    model = MODELS[key]
    if model.startswith("kserve:"):
        if not kserve:
            raise ValidationError(f"{name}: validate KServe objects with --kserve (in a subprocess)")
        model = model[len("kserve:") :]
    return build(obj, model, name, kserve=kserve)


def _validate_service_monitor(obj: dict[str, Any], name: str) -> dict[str, Any]:
    allowed = {"apiVersion", "kind", "metadata", "spec"}
    if set(obj) - allowed:
        raise ValidationError(f"{name}: unknown field(s) {sorted(set(obj) - allowed)}")
    build(obj["metadata"], "V1ObjectMeta", f"{name}.metadata")
    spec = obj["spec"]
    if set(spec) - {"selector", "endpoints", "namespaceSelector", "jobLabel"}:
        raise ValidationError(f"{name}.spec: unknown field(s) {sorted(set(spec))}")
    build(spec["selector"], "V1LabelSelector", f"{name}.spec.selector")
    if not spec.get("endpoints"):
        raise ValidationError(f"{name}.spec.endpoints: required, at least one")
    for i, endpoint in enumerate(spec["endpoints"]):
        if set(endpoint) - SERVICE_MONITOR_ENDPOINT_FIELDS or "port" not in endpoint:
            raise ValidationError(f"{name}.spec.endpoints[{i}]: fields {sorted(endpoint)}")
    return obj


def validate_file(path: str, *, kserve: bool = False) -> list[Any]:
    import yaml

    with open(path, encoding="utf-8") as f:
        return [validate_object(obj, kserve=kserve) for obj in yaml.safe_load_all(f) if obj is not None]


def main(argv: list[str]) -> int:
    kserve = "--kserve" in argv
    files = [a for a in argv if a != "--kserve"]
    count = 0
    for path in files:
        try:
            count += len(validate_file(path, kserve=kserve))
        except ValidationError as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            return 1
    print(f"validated {count} objects")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
