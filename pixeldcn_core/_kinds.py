"""The built-in layer kinds: each one's registry entry, pointing at its reference, emitters and fold.

Imported once by ``pixeldcn_core/__init__.py``. A new kind is one more :func:`register_kind` call
(here for a built-in, anywhere for a plugin or a test's toy kind).
"""

from __future__ import annotations

from . import _emit as emit
from . import _fold as fold
from . import _ipixel_cl as ipixel_cl
from . import reference as ref
from ._errors import WeightError
from ._specs import KindInfo, register_kind

__all__: list[str] = []


def _mask_taps(k: int) -> int:
    """Number of taps of a k x k kernel with r + c odd (the PixelDCL mask)."""
    return (k * k) // 2


def _dcl_channels(shape: tuple[int, ...]) -> tuple[int, int]:
    return shape[0], shape[1]  # [Cin, C, k, k]


def _dcl_fan_in(name: str, shape: tuple[int, ...]) -> int:
    # Each output pixel of a stride-2 transposed conv receives about k^2 / 4 taps per input channel.
    return shape[0] * shape[2] ** 2 // 4


def _subpixel_channels(shape: tuple[int, ...]) -> tuple[int, int]:
    if shape[0] % 4:
        raise WeightError(
            f"subpixel_conv: weight.shape[0] must be 4*C (a multiple of 4), got {shape[0]}"
        )
    return shape[1], shape[0] // 4  # [4C, Cin, k, k]


register_kind(KindInfo(
    name="dcl",
    title="deconvolution (transposed conv, TF 'SAME')",
    default_kernel=6,
    min_kernel=2,
    odd_kernel=False,
    weight_shapes=lambda cin, c, k: {"weight": (cin, c, k, k)},
    macs_per_input_pixel=lambda cin, c, k: cin * c * k * k,
    reference=ref.dcl,
    emitters={"efficient": emit.dcl_efficient},
    channels=_dcl_channels,
    fold=fold.fold_dcl,
    fan_in=_dcl_fan_in,
    # He stays the default: "bilinear" trained better on SR x4 and the x4 decoder, but not on
    # SR x2 at k = 3 and 4 (`pixeldcn bench quality`, 3 seeds).
    inits=("default", "bilinear"),
    aliases=("deconv", "deconvolution", "conv_transpose"),
    paper="the baseline: TF conv2d_transpose, stride 2, 'SAME'",
))

register_kind(KindInfo(
    name="pixel_dcl",
    title="PixelDCL",
    default_kernel=3,
    min_kernel=3,
    odd_kernel=True,
    weight_shapes=lambda cin, c, k: {"w1": (c, cin, k, k), "w2": (c, c, k, k), "w3": (c, c, k, k)},
    macs_per_input_pixel=lambda cin, c, k: (
        k * k * cin * c + k * k * c * c + 2 * _mask_taps(k) * c * c
    ),
    reference=ref.pixel_dcl,
    emitters={"efficient": emit.pixel_dcl_efficient, "faithful": emit.pixel_dcl_faithful},
    interleaves=True,
    fold=fold.fold_pixel_dcl,
    # "bilinear" (artifact-free start, exporters _inits) is the default: in `pixeldcn bench quality`
    # it trained at least as well as He init on SR x2, SR x4 and the x4 decoder (3 seeds).
    inits=("bilinear", "default"),
    aliases=("pixeldcl",),
    paper="Gao et al. 2017, Eqn. 3 and Figure 6 (authors' pixel_dcl)",
))

register_kind(KindInfo(
    name="ipixel_dcl",
    title="iPixelDCL",
    default_kernel=3,
    min_kernel=1,
    odd_kernel=True,
    weight_shapes=lambda cin, c, k: {
        "w1": (c, cin, k, k),
        "w2": (c, cin + c, k, k),
        "w3": (2 * c, cin + 2 * c, k, k),
    },
    macs_per_input_pixel=lambda cin, c, k: (
        k * k * (c * cin + c * (cin + c) + 2 * c * (cin + 2 * c))
    ),
    reference=ref.ipixel_dcl,
    emitters={"efficient": emit.ipixel_dcl_efficient, "faithful": emit.ipixel_dcl_faithful},
    interleaves=True,
    fold=fold.fold_ipixel_dcl,
    # "bilinear" (artifact-free start, exporters _inits) is the default: in `pixeldcn bench quality`
    # it trained at least as well as He init on SR x2, SR x4 and the x4 decoder (3 seeds).
    inits=("bilinear", "default"),
    aliases=("ipixeldcl",),
    paper="Gao et al. 2017, Eqn. 2 with F3, F4 in parallel (authors' ipixel_dcl)",
))

register_kind(KindInfo(
    name="resize_conv",
    title="resize-convolution (nearest x2 + conv)",
    default_kernel=3,
    min_kernel=1,
    odd_kernel=True,
    weight_shapes=lambda cin, c, k: {"weight": (c, cin, k, k)},
    # Nearest x2 then a k x k conv: each output phase is a ((k+1)/2)^2-tap conv at input
    # resolution (the k x k taps that read the same input pixel add up).
    macs_per_input_pixel=lambda cin, c, k: 4 * cin * c * ((k + 1) // 2) ** 2,
    reference=ref.resize_conv,
    emitters={"efficient": emit.resize_conv_efficient, "faithful": emit.resize_conv_faithful},
    interleaves=True,
    fold=fold.fold_out_channels,
    aliases=("resize", "upsample_conv"),
    paper="Odena et al. 2016, Deconvolution and Checkerboard Artifacts",
))

register_kind(KindInfo(
    name="subpixel_conv",
    title="sub-pixel convolution (conv + pixel shuffle)",
    default_kernel=3,
    min_kernel=1,
    odd_kernel=True,
    weight_shapes=lambda cin, c, k: {"weight": (4 * c, cin, k, k)},
    macs_per_input_pixel=lambda cin, c, k: 4 * c * cin * k * k,
    reference=ref.subpixel_conv,
    emitters={"efficient": emit.subpixel_conv_efficient},
    channels=_subpixel_channels,
    fold=fold.fold_subpixel_conv,
    inits=("icnr", "default"),
    aliases=("subpixel", "pixel_shuffle", "pixelshuffle"),
    paper="Shi et al. 2016 (ESPCN); ICNR init from Aitken et al. 2017",
))

register_kind(KindInfo(
    name="ipixel_cl",
    title="iPixelCL (size-keeping; authors' ipixel_cl)",
    default_kernel=3,
    min_kernel=1,
    odd_kernel=False,
    weight_shapes=ipixel_cl.ipixel_cl_weight_shapes,
    macs_per_input_pixel=ipixel_cl.ipixel_cl_macs,
    reference=ref.ipixel_cl,
    emitters={"efficient": ipixel_cl.ipixel_cl_efficient, "faithful": ipixel_cl.ipixel_cl_faithful},
    interleaves=True,
    fold=ipixel_cl.ipixel_cl_fold,
    aliases=("ipixelcl",),
    scale=1,
    size_multiple=2,
    paper="Gao et al. 2017, the authors' code (ipixel_cl: conv1, conv2, conv4, conv5 = w1..w4)",
))
