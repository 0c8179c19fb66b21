"""The registry is the one place a kind is described.

A toy kind (nearest x2 then a k x k conv, written here and nowhere else) is registered inside the
tests; with no other file changed it must reach the parity matrix, ``pixeldcn layer``,
``pixeldcn export --up``, ``convert_deconvs`` and ``pixeldcn bench layers --quick``. Static checks
keep it so: no package imports another package's private module, and no code outside the registry
branches on a kind's name.
"""

from __future__ import annotations

import ast
import json
import pathlib
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pixeldcn_core as pc
from exporters.pytorch import UNet, convert_deconvs, register_module, unregister_module
from exporters.pytorch import UpsampleLayer as _Up
from pixeldcn_core import reference as R
from pixeldcn_core.cli import main

from . import test_core_parity as parity

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("pixeldcn_core", "exporters", "triton_repo", "benchmarks")
TOY = "toy_nearest_conv"


# -- the toy kind: y = conv(nearest_x2(x), weight), 'same' padding, k odd -------------------------
def toy_reference(x, weight, bias=None):
    w = np.asarray(weight, np.float64)
    up = np.repeat(np.repeat(np.asarray(x, np.float64), 2, axis=2), 2, axis=3)
    y = R.conv2d(up, w)
    return y if bias is None else y + np.asarray(bias, np.float64)[None, :, None, None]


def toy_emitter(b, x, spec, w, interleave):
    scales = b.initializer(np.array([1, 1, 2, 2], np.float32), "scales", cast=False)
    up = b.op("Resize", [x, "", scales], {"mode": "nearest", "nearest_mode": "floor",
                                          "coordinate_transformation_mode": "asymmetric"})
    inputs = [up, b.initializer(w["weight"], "w")]
    if w.get("bias") is not None:
        inputs.append(b.initializer(w["bias"], "b"))
    k = spec.k
    return b.op("Conv", inputs, {"kernel_shape": [k, k], "pads": [k // 2] * 4})


TOY_INFO = pc.KindInfo(
    name=TOY,
    title="toy: nearest x2 then conv",
    default_kernel=3,
    min_kernel=1,
    odd_kernel=True,
    weight_shapes=lambda cin, c, k: {"weight": (c, cin, k, k)},
    macs_per_input_pixel=lambda cin, c, k: 4 * cin * c * k * k,
    reference=toy_reference,
    emitters={"efficient": toy_emitter},
    fold=lambda spec, w, s: {"weight": w["weight"] * s[:, None, None, None]},
)


def toy_function(x, weight, bias=None):
    k = int(weight.shape[-1])
    return F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight, bias, padding=k // 2)


class Toy2d(_Up):
    """All a kind's module needs: the base builds ``weight`` from the registry's shapes, checks
    the spec and ``init``, initialises with the registry's fan-in and runs ``function``."""

    kind = TOY
    function = staticmethod(toy_function)


@pytest.fixture
def toy() -> Iterator[str]:
    with pc.registered_kind(TOY_INFO):
        register_module(Toy2d)
        try:
            yield TOY
        finally:
            unregister_module(TOY)


# -- the toy kind reaches everything --------------------------------------------------------------
def test_a_registered_toy_kind_passes_every_case_of_the_parity_matrix(toy):
    cases = parity.parity_cases([toy])
    assert [c.values for c in cases] == [(toy, "efficient", 3, "depth_to_space"),
                                         (toy, "efficient", 5, "depth_to_space")]
    for case in cases:
        for cin, c, bias in parity.CHANNELS:
            parity.test_float32_model_matches_reference_within_1e5_of_output_scale(
                *case.values, cin, c, bias)
        parity.test_float16_model_matches_reference_within_5e3_of_output_scale(*case.values)


def test_a_registered_toy_kind_appears_in_pixeldcn_layer(toy, capsys):
    assert main(["layer", "--kind", toy, "--size", "5", "6"]) == 0
    out = capsys.readouterr().out
    assert f"({toy}, form=efficient" in out and "-> PASS" in out


def test_a_registered_toy_kind_exports_a_verified_unet_through_pixeldcn_export(toy, tmp_path, capsys):
    out = tmp_path / "unet.onnx"
    rc = main(["export", "--arch", "unet", "--up", toy, "--base-channels", "4", "--depth", "2",
               "--num-classes", "2", "--input-shape", "1,3,16,16", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "result: PASS" in printed
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "Resize" in ops and not any(n.domain for n in onnx.load(str(out)).graph.node)


def test_convert_deconvs_swaps_a_deconvolution_for_a_registered_toy_kind(toy):
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ConvTranspose2d(4, 2, 4, 2, 1))
    report = convert_deconvs(model, kind=toy)
    assert isinstance(model[1], Toy2d) and [p for p, _ in report.replaced] == ["1"]
    assert model(torch.zeros(1, 3, 5, 7)).shape == (1, 2, 10, 14)


def test_a_registered_toy_kind_is_timed_by_bench_layers_quick(toy, tmp_path, capsys):
    rc = main(["bench", "layers", "--quick", "--kinds", f"dcl,{toy}", "--out", str(tmp_path),
               "--no-plots", "--no-progress"])
    assert rc == 0, capsys.readouterr()
    data = json.loads((tmp_path / "layers.json").read_text())
    assert toy in json.dumps(data)


def test_a_registered_toy_kind_is_trained_and_scored_by_bench_quality(toy, tmp_path, capsys):
    # the quality bench reads both registries: a new kind gets its rows with no change there
    rc = main(["bench", "quality", "--quick", "--kinds", toy, "--tasks", "sr2,ae4", "--steps", "2",
               "--no-latency", "--out", str(tmp_path), "--no-plots", "--no-progress"])
    assert rc == 0, capsys.readouterr()
    data = json.loads((tmp_path / "quality.json").read_text())
    assert {(r["task"], r["kind"]) for r in data["rows"]} == {("sr2", toy), ("ae4", toy)}
    assert f"**{toy} (" in (tmp_path / "quality.md").read_text()  # it heads the headline table


def test_a_toy_kind_is_gone_after_its_test_and_a_taken_name_is_refused(toy):
    with pytest.raises(pc.SpecError, match=f"kind '{toy}': \\['{toy}'\\] already registered"):
        pc.register_kind(TOY_INFO.__class__(**{**TOY_INFO.__dict__}))
    with pytest.raises(pc.SpecError, match=r"kind 'other': \['pixeldcl'\] already registered"):
        pc.register_kind(pc.KindInfo(**{**TOY_INFO.__dict__, "name": "other",
                                        "aliases": ("PixelDCL",)}))


def test_the_toy_kind_is_unregistered_outside_its_fixture():
    assert TOY not in pc.layer_kinds()
    with pytest.raises(pc.UnknownKindError, match=f"expected one of {', '.join(pc.layer_kinds())}$"):
        pc.get_kind(TOY)


def test_a_core_kind_without_a_pytorch_module_is_refused_clearly():
    with pc.registered_kind(TOY_INFO), pytest.raises(pc.UnknownKindError,
                                                     match="has no PyTorch module"):
        UNet(3, 2, 4, 2, up=TOY)


def test_kind_info_is_validated_on_construction():
    with pytest.raises(pc.SpecError, match="unknown forms \\['fast'\\]"):
        pc.KindInfo(**{**TOY_INFO.__dict__, "emitters": {"fast": toy_emitter}})
    with pytest.raises(pc.SpecError, match="expected a lowercase identifier"):
        pc.KindInfo(**{**TOY_INFO.__dict__, "name": "Toy Kind"})


# -- static checks over the packages -------------------------------------------------------------
def _sources() -> Iterator[tuple[str, pathlib.Path, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield package, path, ast.parse(path.read_text(), str(path))


def _imported_modules(tree: ast.Module, path: pathlib.Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            for alias in node.names:  # from pixeldcn_core import _specs
                yield node.lineno, f"{node.module}.{alias.name}"


def test_no_package_imports_another_packages_private_module():
    offences = []
    for package, path, tree in _sources():
        for line, module in _imported_modules(tree, path):
            parts = module.split(".")
            if parts[0] not in PACKAGES or parts[0] == package:
                continue
            if any(p.startswith("_") and not p.startswith("__") for p in parts[1:]):
                offences.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not offences, "\n".join(offences)


# Where a kind may be named: its own files (``<package>/kinds/<kind>.py``, the core's entry and the
# PyTorch module), and only there its own name. Elsewhere a literal table keyed by kinds is
# allowed only as data (e.g. the paper's published figures), marked on its first line with
# DATA_MARK; __all__ lists are names of functions, not kinds.
DATA_MARK = "# per-kind data, not a branch"


def _own_kind(path: pathlib.Path) -> str | None:
    """The kind a file belongs to: ``kinds/<kind>.py`` names its kind; any other file none."""
    return path.stem if path.parent.name == "kinds" and not path.stem.startswith("_") else None


def _compares_an_init(node: ast.Compare) -> bool:
    """``self.init == "bilinear"`` compares an initialisation's name, which may also be a kind's
    (the ``bilinear`` kind and the ``bilinear`` init of DCL / PixelDCL): not a kind branch."""
    return any((isinstance(side, ast.Attribute) and side.attr == "init")
               or (isinstance(side, ast.Name) and side.id == "init")
               for side in [node.left, *node.comparators])


def test_no_code_outside_the_registry_branches_on_a_kind_name():
    """No ``kind == "dcl"``, ``kind in ("pixel_dcl", ...)`` nor a literal list of several kinds."""
    kinds = set(pc.layer_kinds())
    offences = []
    for _, path, tree in _sources():
        rel = str(path.relative_to(ROOT))
        own = _own_kind(path)
        lines = path.read_text().splitlines()
        exempt = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign)
                  and any(isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets)}
        exempt |= {id(inner) for n in ast.walk(tree) if isinstance(n, (ast.Dict, ast.Tuple, ast.List))
                   and DATA_MARK in lines[n.lineno - 1] for inner in ast.walk(n)}  # the table, rows too
        for node in ast.walk(tree):
            if id(node) in exempt:
                continue
            named = []
            if isinstance(node, ast.Compare) and not _compares_an_init(node):
                for side in [node.left, *node.comparators]:
                    if isinstance(side, ast.Constant) and side.value in kinds:
                        named.append(side.value)
                    if isinstance(side, (ast.Tuple, ast.List, ast.Set)):
                        named += [e.value for e in side.elts
                                  if isinstance(e, ast.Constant) and e.value in kinds]
            elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                elts = [e.value for e in node.elts if isinstance(e, ast.Constant)]
                if len([e for e in elts if e in kinds]) >= 2:
                    named = elts
            elif isinstance(node, ast.Dict):
                keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
                if len([k for k in keys if k in kinds]) >= 2:
                    named = keys
            named_kinds = sorted(set(named) & kinds - {own})
            if named_kinds:
                offences.append(f"{rel}:{node.lineno} names {named_kinds}")
    assert not offences, "\n".join(offences)


# -- a weightless toy kind with a channel rule: nearest x2, then sum channel pairs -------------
PAIRS = "toy_nearest_pairsum"


def pairsum_reference(x, bias=None):
    x = np.asarray(x, np.float64)
    n, c, h, w = x.shape
    up = np.repeat(np.repeat(x, 2, axis=2), 2, axis=3)
    y = up.reshape(n, c // 2, 2, 2 * h, 2 * w).sum(axis=2)
    return y if bias is None else y + np.asarray(bias, np.float64)[None, :, None, None]


def pairsum_emitter(b, x, spec, w, interleave):
    scales = b.initializer(np.array([1, 1, 2, 2], np.float32), "scales", cast=False)
    up = b.op("Resize", [x, "", scales], {"mode": "nearest", "nearest_mode": "floor",
                                          "coordinate_transformation_mode": "asymmetric"})
    cin, c = spec.in_channels, spec.out_channels
    ones = np.zeros((c, cin, 1, 1), np.float32)
    ones[np.arange(cin) // 2, np.arange(cin)] = 1.0  # the spec gives Cin: no weight tells it
    inputs = [up, b.initializer(ones, "sum")]
    if w.get("bias") is not None:
        inputs.append(b.initializer(w["bias"], "b"))
    return b.op("Conv", inputs, {"kernel_shape": [1, 1]})


PAIRS_INFO = pc.KindInfo(
    name=PAIRS, title="toy: nearest x2 then sum channel pairs", default_kernel=1, min_kernel=1,
    max_kernel=1, odd_kernel=True, weight_shapes=lambda cin, c, k: {},
    macs_per_input_pixel=lambda cin, c, k: 0, reference=pairsum_reference,
    emitters={"efficient": pairsum_emitter}, in_per_out=2,
)


def pairsum_function(x, bias=None):
    n, c, h, w = x.shape
    y = F.interpolate(x, scale_factor=2, mode="nearest").view(n, c // 2, 2, 2 * h, 2 * w).sum(2)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


class PairSum2d(_Up):
    kind = PAIRS
    function = staticmethod(pairsum_function)
    param_names: ClassVar[dict[str, str]] = {}


@pytest.fixture
def pairs() -> Iterator[str]:
    with pc.registered_kind(PAIRS_INFO):
        register_module(PairSum2d)
        try:
            yield PAIRS
        finally:
            unregister_module(PAIRS)


def test_a_weightless_kind_with_a_channel_rule_passes_the_parity_matrix(pairs):
    cases = parity.parity_cases([pairs])
    assert [c.values for c in cases] == [(pairs, "efficient", 1, "depth_to_space")]
    for cin, c, bias in parity.CHANNELS:  # fitted to C = Cin / 2
        parity.test_float32_model_matches_reference_within_1e5_of_output_scale(
            *cases[0].values, cin, c, bias)
    parity.test_float16_model_matches_reference_within_5e3_of_output_scale(*cases[0].values)


def test_the_channel_rule_derives_and_checks_out_channels(pairs):
    assert pc.LayerSpec(pairs, 6).out_channels == 3
    assert pc.LayerSpec(pairs, 6, 3).weight_shapes() == {}
    with pytest.raises(pc.SpecError, match=r"in_channels must be 2 x out_channels \(C = Cin / 2\), "
                                           r"got in_channels=6, out_channels=6"):
        pc.LayerSpec(pairs, 6, 6)
    with pytest.raises(pc.SpecError, match="in_channels must be a multiple of 2"):
        pc.LayerSpec(pairs, 5)
    with pytest.raises(pc.SpecError, match=r"kernel_size must be 1 .*got 3"):
        pc.LayerSpec(pairs, 4, 2, 3)
    with pytest.raises(pc.SpecError, match="out_channels is free"):
        pc.LayerSpec("pixel_dcl", 4)


def test_a_weightless_spec_comes_from_in_channels_or_the_bias(pairs):
    with pytest.raises(pc.WeightError, match="has no weights to read the channels from: give "
                                             "in_channels"):
        pc.LayerSpec.from_weights(pairs, {})
    assert pc.LayerSpec.from_weights(pairs, {}, in_channels=4) == pc.LayerSpec(pairs, 4, 2)
    spec = pc.LayerSpec.from_weights(pairs, {"bias": np.zeros(3, np.float32)})
    assert (spec.in_channels, spec.out_channels, spec.bias) == (6, 3, True)
    with pytest.raises(pc.WeightError, match="in_channels=5, while weight of shape"):
        pc.LayerSpec.from_weights("resize_conv", {"weight": np.zeros((2, 4, 3, 3), np.float32)},
                                  in_channels=5)
    x = np.ones((1, 4, 2, 3), np.float32)
    assert R.apply(pairs, x, {}).shape == (1, 2, 4, 6)  # channels from x


def test_a_weightless_module_exports_and_verifies(pairs, tmp_path):
    from exporters.pytorch import export_onnx

    layer = PairSum2d(6, bias=True)
    assert (layer.out_channels, [n for n, _ in layer.named_parameters()]) == (3, ["bias"])
    path = export_onnx(layer, tmp_path / "pairs.onnx", (1, 6, 5, 7))
    model = onnx.load(str(path))
    assert {n.op_type for n in model.graph.node} >= {"Resize", "Conv"}
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 6 and isinstance(dims[2], str) and isinstance(dims[3], str)
