"""What is special about CARAFE (the registry-driven matrices cover the rest).

- softmax normalisation: every output pixel is a convex combination of its neighbourhood, so a
  constant input gives the same constant wherever the neighbourhood is inside the image;
- mmcv ``CARAFEPack`` state dicts load under their own names and give mmcv's computation
  (written here independently, as mmcv's pixel_shuffle + softmax + naive CUDA kernel loop);
- the spec's hyper-parameters (Cm, k_enc) and reading them back from the weights;
- init ``"box"`` starts as a k x k box filter of the nearest x2 map;
- ``convert_deconvs`` takes only deconvolutions that keep the channels;
- memory: the efficient form's largest intermediate is the ``[N, C, 4, H, W]`` accumulator, the
  faithful form's the ``4 k^2``-times up-sampled neighbourhood stack (from the ONNX graph).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import helper, shape_inference
from torch import nn

import pixeldcn_core as pc
from exporters.pytorch import UNet, convert_deconvs, export_onnx, make_layer
from exporters.pytorch.kinds.carafe import CARAFE2d
from pixeldcn_core import reference as R

from .conftest import assert_close_to_reference, run_onnx

FORMS = pc.get_kind("carafe").forms


def _weights(c: int = 4, k: int = 5, seed: int = 0, **params: int) -> dict[str, np.ndarray]:
    return pc.LayerSpec("carafe", c, c, k, bias=False, params=params).random_weights(seed)


# -- softmax normalisation ----------------------------------------------------------------------
@pytest.mark.parametrize("k", [3, 5])
def test_a_constant_input_gives_the_same_constant_wherever_the_neighbourhood_is_inside(k):
    w = _weights(3, k, seed=k)
    x = np.full((2, 3, 9, 8), 2.5, np.float32)
    x[:, 1] = -1.0  # a different constant per channel
    r = k // 2
    inner = (slice(None), slice(None), slice(2 * r, 2 * (9 - r)), slice(2 * r, 2 * (8 - r)))
    outs = {"reference": R.apply("carafe", x, w)}
    for form in FORMS:
        outs[form] = run_onnx(pc.build_layer_model("carafe", w, form=form), {"x": x})[0]
    outs["torch"] = CARAFE2d.from_onnx_weights(w)(torch.from_numpy(x)).detach().numpy()
    expected = np.broadcast_to(x[:, :, :1, :1], outs["reference"][inner].shape)
    for name, y in outs.items():
        np.testing.assert_allclose(y[inner], expected, rtol=0, atol=1e-5, err_msg=name)
    # The kernels are content-dependent (not uniform): the zero-padded border is not a plain
    # box-filter fall-off, and it differs between phases.
    y = outs["reference"]
    assert not np.allclose(y[:, :, 0, 0], y[:, :, 1, 1])


# -- mmcv CARAFEPack ----------------------------------------------------------------------------
def _mmcv_carafe_pack(x: torch.Tensor, sd: dict[str, torch.Tensor], k: int) -> torch.Tensor:
    """mmcv's CARAFEPack.forward (scale 2, group 1) with carafe_naive's CUDA loop in Python."""
    z = F.conv2d(x, sd["channel_compressor.weight"], sd["channel_compressor.bias"])
    ke = sd["content_encoder.weight"].shape[-1]
    mask = F.conv2d(z, sd["content_encoder.weight"], sd["content_encoder.bias"], padding=ke // 2)
    mask = F.pixel_shuffle(mask, 2)  # kernel_normalizer
    n, mask_c, h2, w2 = mask.shape
    mask = F.softmax(mask.view(n, mask_c // k**2, -1, h2, w2), dim=2).view(n, mask_c, h2, w2)
    out = torch.zeros(n, x.shape[1], h2, w2, dtype=x.dtype)
    h, w = x.shape[2:]
    for ph in range(h2):
        for pw in range(w2):
            down_ph, down_pw = ph // 2, pw // 2
            for iy in range(down_ph - (k - 1) // 2, down_ph + (k - 1) // 2 + 1):
                for ix in range(down_pw - (k - 1) // 2, down_pw + (k - 1) // 2 + 1):
                    if iy < 0 or iy > h - 1 or ix < 0 or ix > w - 1:
                        continue
                    mask_c = (iy - down_ph + (k - 1) // 2) * k + (ix - down_pw + (k - 1) // 2)
                    out[:, :, ph, pw] += x[:, :, iy, ix] * mask[:, mask_c, ph, pw][:, None]
    return out


def test_an_mmcv_carafe_pack_state_dict_loads_as_it_is_and_computes_what_mmcv_computes():
    k, c, cm, ke = 3, 5, 4, 5
    g = torch.Generator().manual_seed(0)
    sd = {  # mmcv CARAFEPack(channels=5, scale_factor=2, up_kernel=3, encoder_kernel=5,
            #                 compressed_channels=4).state_dict(), with random values
        "channel_compressor.weight": torch.randn(cm, c, 1, 1, generator=g, dtype=torch.float64),
        "channel_compressor.bias": torch.randn(cm, generator=g, dtype=torch.float64),
        "content_encoder.weight": torch.randn(4 * k * k, cm, ke, ke, generator=g,
                                              dtype=torch.float64) * 0.3,
        "content_encoder.bias": torch.randn(4 * k * k, generator=g, dtype=torch.float64),
    }
    x = torch.randn(2, c, 4, 5, generator=g, dtype=torch.float64)
    expected = _mmcv_carafe_pack(x, sd, k).numpy()

    layer = CARAFE2d(c, c, k, compressed_channels=cm, encoder_kernel=ke).double()
    layer.load_state_dict(sd)  # the same keys and shapes: strict load
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, rtol=0, atol=1e-12)

    prefixed = {f"neck.upsample.{key}": v for key, v in sd.items()}
    loaded = CARAFE2d.from_mmcv(prefixed, prefix="neck.upsample.")
    assert (loaded.kernel_size, loaded.compressed_channels, loaded.encoder_kernel) == (k, cm, ke)
    weights = loaded.onnx_weights()
    np.testing.assert_allclose(R.apply("carafe", x.numpy(), weights), expected, rtol=0,
                               atol=1e-5 * np.abs(expected).max())
    y = run_onnx(pc.build_layer_model("carafe", weights), {"x": x.float().numpy()})[0]
    assert_close_to_reference(y, expected, "float32")


def test_from_mmcv_names_missing_keys_and_a_wrong_scale_factor():
    with pytest.raises(pc.WeightError, match=r"missing keys \['up.channel_compressor.bias'"):
        CARAFE2d.from_mmcv({"up.channel_compressor.weight": torch.zeros(4, 4, 1, 1)}, prefix="up.")
    x4 = {"channel_compressor.weight": torch.zeros(4, 4, 1, 1),
          "channel_compressor.bias": torch.zeros(4),
          "content_encoder.weight": torch.zeros(16 * 25, 4, 3, 3),  # scale_factor 4: 4^2 k^2
          "content_encoder.bias": torch.zeros(16 * 25)}
    with pytest.raises(pc.WeightError, match=r"encoder_weight.shape\[0\] must be 4 k_up\^2"):
        CARAFE2d.from_mmcv(x4)


# -- spec ---------------------------------------------------------------------------------------
def test_the_spec_holds_cm_and_k_enc_and_reads_them_back_from_the_weights():
    spec = pc.LayerSpec("carafe", 96)
    assert (spec.out_channels, spec.k) == (96, 5)
    assert spec.param_values == {"compressed_channels": 64, "encoder_kernel": 3}  # min(C, 64)
    assert pc.LayerSpec("carafe", 16).param_values["compressed_channels"] == 16
    spec = pc.LayerSpec("carafe", 8, 8, 3, params={"compressed_channels": 5, "encoder_kernel": 1})
    assert spec.weight_shapes() == {
        "compressor_weight": (5, 8, 1, 1), "compressor_bias": (5,),
        "encoder_weight": (36, 5, 1, 1), "encoder_bias": (36,),
    }
    assert pc.LayerSpec.from_weights("carafe", spec.random_weights(0)) == spec
    assert spec.macs_per_input_pixel() == 8 * 5 + 5 * 36 + 4 * 8 * 9


@pytest.mark.parametrize(("make", "message"), [
    (lambda: pc.LayerSpec("carafe", 8, 4), "out_channels must equal in_channels"),
    (lambda: pc.LayerSpec("carafe", 8, 8, 4), "kernel_size must be an odd integer >= 1, got 4"),
    (lambda: pc.LayerSpec("carafe", 8, params={"groups": 2}),
     r"unknown parameters \['groups'\]; expected compressed_channels, encoder_kernel"),
    (lambda: pc.LayerSpec("carafe", 8, params={"compressed_channels": 0}),
     "carafe: compressed_channels must be a positive int, got 0"),
    (lambda: pc.LayerSpec("carafe", 8, params={"encoder_kernel": 2}).weight_shapes(),
     "encoder_kernel must be odd"),
    (lambda: CARAFE2d(8, 6), "out_channels must equal in_channels"),
])
def test_bad_specs_are_refused_naming_the_value(make, message):
    with pytest.raises(pc.SpecError, match=message):
        make()


def test_mismatched_weights_are_refused_naming_the_shapes():
    w = _weights(4, 3)
    with pytest.raises(pc.WeightError, match=r"encoder_weight must be \[4 k_up\^2, Cm=4"):
        pc.LayerSpec.from_weights("carafe", {**w, "encoder_weight": np.zeros((36, 3, 3, 3))})
    with pytest.raises(pc.WeightError, match=r"compressor_bias has shape \(3,\), expected \(4,\)"):
        pc.build_layer_model("carafe", {**w, "compressor_bias": np.zeros(3, np.float32)})
    with pytest.raises(pc.WeightError, match=r"missing weights \['encoder_bias'\]"):
        pc.LayerSpec.from_weights("carafe", {n: v for n, v in w.items() if n != "encoder_bias"})


# -- init ---------------------------------------------------------------------------------------
def test_box_init_starts_as_a_k_by_k_box_filter_of_the_nearest_upsampled_input():
    torch.manual_seed(0)
    layer = make_layer("carafe", 6, 6, 5)
    assert layer.init == "box" and pc.get_kind("carafe").inits == ("box", "default")
    x = torch.randn(1, 6, 10, 12)
    box = F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=True)  # zero-padded mean
    expected = F.interpolate(box, scale_factor=2, mode="nearest")
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected, rtol=0, atol=2e-2)
        he = make_layer("carafe", 6, 6, 5, init="default")
        assert (he(x) - expected).abs().max() > 0.1  # He init: content-dependent kernels


# -- convert_deconvs ----------------------------------------------------------------------------
def test_convert_deconvs_takes_a_channel_keeping_deconv_and_refuses_another_clearly():
    model = nn.Sequential(nn.ConvTranspose2d(6, 6, 4, stride=2, padding=1))
    report = convert_deconvs(model, "carafe", kernel_size=3)
    assert isinstance(model[0], CARAFE2d) and model[0].kernel_size == 3
    assert model[0].bias is not None and [p for p, _ in report.replaced] == ["0"]
    assert model(torch.zeros(1, 6, 5, 7)).shape == (1, 6, 10, 14)
    other = nn.Sequential(nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1))
    with pytest.raises(pc.SpecError, match="only a ConvTranspose2d with in_channels == "
                                           "out_channels; got 8 -> 4"):
        convert_deconvs(other, "carafe")
    assert isinstance(other[0], nn.ConvTranspose2d)  # left untouched


# -- export -------------------------------------------------------------------------------------
def test_a_carafe_unet_exports_verified_with_dynamic_height_and_width(tmp_path):
    torch.manual_seed(0)
    model = UNet(3, 2, 4, 2, up="carafe").eval()
    path = export_onnx(model, tmp_path / "unet.onnx", (1, 3, 16, 24))  # verify=True: ORT vs torch
    m = onnx.load(str(path))
    assert {"Softmax", "Pad", "DepthToSpace"} <= {n.op_type for n in m.graph.node}
    assert not any(n.domain for n in m.graph.node)
    dims = [d.dim_param or d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims[2:] == ["height", "width"]
    x = torch.randn(2, 3, 32, 16)
    with torch.no_grad():
        expected = model(x).numpy()
    (y,) = run_onnx(m, {m.graph.input[0].name: x.numpy()})
    assert_close_to_reference(y, expected.astype(np.float64), "float32")


# -- memory -------------------------------------------------------------------------------------
def intermediate_bytes(model: onnx.ModelProto, shape: tuple[int, ...]) -> tuple[int, int]:
    """(largest intermediate, peak of the tensors alive at once when the nodes run in order), in
    bytes, from ONNX shape inference at the input ``shape``."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for d, v in zip(m.graph.input[0].type.tensor_type.shape.dim, shape, strict=True):
        d.Clear()
        d.dim_value = v
    inferred = shape_inference.infer_shapes(m, strict_mode=True, data_prop=True)
    sizes = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]:
        t = vi.type.tensor_type
        dims = [d.dim_value for d in t.shape.dim]
        assert all(dims), f"{vi.name}: shape not inferred"
        sizes[vi.name] = int(np.prod(dims)) * helper.tensor_dtype_to_np_dtype(t.elem_type).itemsize
    nodes = list(inferred.graph.node)
    last = {t: i for i, n in enumerate(nodes) for t in n.input}
    last.update({o.name: len(nodes) for o in inferred.graph.output})
    live, largest, peak = {m.graph.input[0].name}, 0, 0
    for i, n in enumerate(nodes):
        live |= set(n.output)
        largest = max([largest, *(sizes[t] for t in n.output)])
        peak = max(peak, sum(sizes[t] for t in live))
        live = {t for t in live if last.get(t, -1) > i}
    return largest, peak


@pytest.mark.parametrize("target", [None, "any"])
def test_the_efficient_form_never_builds_the_k2_neighbourhood_stack(target):
    """At a U-Net decoder shape (1 x 64 x 128 x 128): efficient's largest intermediate is the
    4x accumulator, faithful's the 4 k^2 x up-sampled stack (k = 5: 100x the input)."""
    shape = (1, 64, 128, 128)
    x_bytes = int(np.prod(shape)) * 4
    w = _weights(64, 5)
    eff = intermediate_bytes(pc.build_layer_model("carafe", w, target=target), shape)
    faith = intermediate_bytes(pc.build_layer_model("carafe", w, form="faithful", target=target),
                               shape)
    assert eff[0] == 4 * x_bytes and eff[1] <= 16 * x_bytes
    assert faith[0] == 100 * x_bytes
