"""CARAFE x2 (Wang et al. 2019, Content-Aware ReAssembly of FEatures): emitters and registry entry.

The layer, as mmcv's ``CARAFEPack(channels=C, scale_factor=2)`` with ``up_group=1`` and
``encoder_dilation=1``::

    z       = Conv1x1(x; compressor_weight [Cm, C, 1, 1], compressor_bias [Cm])
    logits  = Conv(z; encoder_weight [4 k^2, Cm, k_enc, k_enc], encoder_bias [4 k^2]), 'same'
    kernels = Softmax_over_k^2(PixelShuffle_2(logits))                   # [N, k^2, 2H, 2W]
    y[n, c, 2i + a, 2j + b] = sum_t kernels[n, t, 2i + a, 2j + b] * x[n, c, i + dy_t, j + dx_t]

with ``k = k_up`` (the spec's ``kernel_size``), tap ``t = (dy + r) k + (dx + r)``, ``r = k // 2``
and ``x`` zero outside. Encoder channel ``4t + 2a + b`` is tap t of phase (a, b) (pixel shuffle's
CRD order). C = Cin: CARAFE reassembles the input's own channels.

Two ONNX forms, standard operators only (no custom op, no Unfold):

- ``efficient``: the kernels stay at input resolution as ``[N, k^2, 4, H, W]`` (a Reshape of the
  encoder output; Softmax over axis 1), the ``k^2`` shifted copies of ``x`` are Slices of one Pad,
  and every tap adds ``x_t [N, C, 1, H, W] * kernel_t [N, 1, 4, H, W]`` to an accumulator
  ``[N, C, 4, H, W]`` (channel ``4c + phase``), which one ``DepthToSpace(CRD)`` interleaves. A
  chain of Adds rather than a stack + ReduceSum: the stack of the k^2 products would be
  ``4 k^2`` times the input; the chain keeps the peak near ``4`` times.
- ``faithful``: the paper literally: kernels pixel-shuffled to ``[N, k^2, 2H, 2W]`` and softmaxed
  there, the ``k x k`` neighbourhoods stacked ``[N, C k^2, H, W]`` and nearest-upsampled to
  ``2H x 2W``, then ``ReduceSum_t(kernels * neighbourhoods)``. Peak memory ``~8 k^2`` times the
  input (the up-sampled stack and the product), i.e. for checking, not for serving.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import numpy as np

from .. import reference as ref
from .._builder import GraphBuilder
from .._errors import SpecError, WeightError
from .._specs import KindInfo, LayerSpec, register_kind
from ._ops import add_bias, conv, int64_const, same_pads

__all__ = [
    "DEFAULT_ENCODER_KERNEL",
    "MAX_COMPRESSED_CHANNELS",
    "carafe_efficient",
    "carafe_faithful",
    "carafe_weight_shapes",
]

#: The content encoder's kernel (the paper's and mmcv's k_encoder = 3).
DEFAULT_ENCODER_KERNEL = 3
#: The compressor's output channels by default: ``min(C, 64)`` (mmcv: 64 whatever C; a layer with
#: fewer than 64 channels gains nothing from widening them).
MAX_COMPRESSED_CHANNELS = 64
_BIG = int(np.iinfo(np.int64).max)  # Slice "to the end"


def default_compressed_channels(channels: int) -> int:
    return min(int(channels), MAX_COMPRESSED_CHANNELS)


def carafe_weight_shapes(
    cin: int, c: int, k: int, *, compressed_channels: int | None = None,
    encoder_kernel: int = DEFAULT_ENCODER_KERNEL,
) -> dict[str, tuple[int, ...]]:
    """The weights of CARAFE with k_up = ``k``, in the order :func:`carafe2d` takes them."""
    cm = default_compressed_channels(cin) if compressed_channels is None else compressed_channels
    ke = encoder_kernel
    if ke % 2 == 0:
        raise SpecError(f"carafe: encoder_kernel must be odd ('same' padding), got {ke}")
    return {
        "compressor_weight": (cm, cin, 1, 1),
        "compressor_bias": (cm,),
        "encoder_weight": (4 * k * k, cm, ke, ke),
        "encoder_bias": (4 * k * k,),
    }


def carafe_macs(
    cin: int, c: int, k: int, *, compressed_channels: int | None = None,
    encoder_kernel: int = DEFAULT_ENCODER_KERNEL,
) -> int:
    """Compressor + encoder + reassembly (4 outputs x C x k^2) per input pixel; softmax not counted."""
    cm = default_compressed_channels(cin) if compressed_channels is None else compressed_channels
    return cin * cm + cm * 4 * k * k * encoder_kernel**2 + 4 * c * k * k


def _fan_in(name: str, shape: tuple[int, ...]) -> int:
    if len(shape) == 1:
        return 200  # the compressor's and encoder's biases: std 0.1, as the output bias
    return int(np.prod(shape[1:]))


# -- emitters -------------------------------------------------------------------------------------
def _kernel_logits(b: GraphBuilder, x: str, w: Mapping[str, np.ndarray]) -> tuple[str, int]:
    """Compressor and encoder: ``[N, 4 k^2, H, W]`` logits (channel 4t + phase) and k."""
    wc, we = w["compressor_weight"], w["encoder_weight"]
    z = conv(b, x, wc, [0, 0, 0, 0], w["compressor_bias"], hint="compressor_w")
    logits = conv(b, z, we, same_pads(int(we.shape[2])), w["encoder_bias"], hint="encoder_w")
    return logits, math.isqrt(int(we.shape[0]) // 4)


def _shifted(b: GraphBuilder, xp: str, k: int) -> Iterator[str]:
    """The ``k^2`` copies ``x_t[i, j] = x[i + dy, j + dx]`` (zero outside) of ``x`` padded by
    ``k // 2``, tap by tap (so that a consumer running nodes in order frees each after use):
    Slices with constant starts and ends, so H and W stay dynamic."""
    axes = int64_const(b, [2, 3], "axes")
    for dy in range(k):
        for dx in range(k):
            # x_t spans padded rows dy .. dy + H - 1, i.e. up to (H + k - 1) - (k - 1 - dy).
            ends = [dy - (k - 1) if dy < k - 1 else _BIG, dx - (k - 1) if dx < k - 1 else _BIG]
            yield b.op("Slice", [xp, int64_const(b, [dy, dx], "starts"), int64_const(b, ends, "ends"), axes])


def _pad(b: GraphBuilder, x: str, r: int) -> str:
    return b.op("Pad", [x, int64_const(b, [0, 0, r, r, 0, 0, r, r], "pads")], {"mode": "constant"})


def _hw(b: GraphBuilder, t: str) -> str:
    return b.op("Shape", [t], {"start": 2})


def carafe_efficient(
    b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray], interleave: str
) -> str:
    """Kernels at input resolution ``[N, k^2, 4, H, W]``; each tap's product
    ``x_t [N, C, 1, H, W] * kernel_t [N, 1, 4, H, W]`` added up; one DepthToSpace (CRD)."""
    logits, k = _kernel_logits(b, x, w)
    hw = _hw(b, x)
    shape5 = b.op("Concat", [int64_const(b, [0, k * k, 4], "shape"), hw], {"axis": 0})
    kernels = b.op("Softmax", [b.op("Reshape", [logits, shape5])], {"axis": 1})  # (N, k^2, 4, H, W)
    one, two = int64_const(b, [1], "axes"), int64_const(b, [2], "axes")
    acc = None
    for t, xt in enumerate(_shifted(b, _pad(b, x, k // 2), k)):
        kt = b.op("Slice", [kernels, int64_const(b, [t], "starts"), int64_const(b, [t + 1], "ends"), one])
        term = b.op("Mul", [b.op("Unsqueeze", [xt, two]), kt])  # (N, C, 4, H, W)
        acc = term if acc is None else b.op("Add", [acc, term])
    assert acc is not None
    flat = b.op("Reshape", [acc, b.op("Concat", [int64_const(b, [0, -1], "shape"), hw], {"axis": 0})])
    y = b.op("DepthToSpace", [flat], {"blocksize": 2, "mode": "CRD"})  # channel 4c + 2a + b
    return add_bias(b, y, w.get("bias"))


def carafe_faithful(
    b: GraphBuilder, x: str, spec: LayerSpec, w: Mapping[str, np.ndarray], interleave: str
) -> str:
    """The paper literally: pixel-shuffled kernels softmaxed at 2H x 2W, the neighbourhoods
    nearest-upsampled to 2H x 2W, ``ReduceSum`` over the k^2 taps of their product."""
    logits, k = _kernel_logits(b, x, w)
    c = spec.in_channels
    kernels = b.op("Softmax", [b.op("DepthToSpace", [logits], {"blocksize": 2, "mode": "CRD"})],
                   {"axis": 1})  # (N, k^2, 2H, 2W)
    two = int64_const(b, [2], "axes")
    stack = b.op("Concat", [b.op("Unsqueeze", [xt, two]) for xt in _shifted(b, _pad(b, x, k // 2), k)],
                 {"axis": 2})  # (N, C, k^2, H, W)
    flat = b.op("Reshape", [stack, b.op("Concat", [int64_const(b, [0, c * k * k], "shape"), _hw(b, x)],
                                        {"axis": 0})])  # (N, C k^2, H, W)
    scales = b.initializer(np.array([1, 1, 2, 2], dtype=np.float32), "scales", cast=False)
    up = b.op("Resize", [flat, "", scales],
              {"mode": "nearest", "nearest_mode": "floor",
               "coordinate_transformation_mode": "asymmetric"})  # (N, C k^2, 2H, 2W)
    hw2 = _hw(b, up)
    up5 = b.op("Reshape", [up, b.op("Concat", [int64_const(b, [0, c, k * k], "shape"), hw2], {"axis": 0})])
    prod = b.op("Mul", [up5, b.op("Unsqueeze", [kernels, int64_const(b, [1], "axes")])])
    y = b.op("ReduceSum", [prod, two], {"keepdims": 0})  # (N, C, 2H, 2W)
    return add_bias(b, y, w.get("bias"))




# -- registry entry -------------------------------------------------------------------------------
def _read_weights(shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, int, int, dict[str, int]]:
    """(C, C, k_up, {compressed_channels, encoder_kernel}) from the four weights' shapes."""
    wc, we = shapes["compressor_weight"], shapes["encoder_weight"]
    if len(wc) != 4 or wc[2:] != (1, 1):
        raise WeightError(f"carafe: compressor_weight must be [Cm, C, 1, 1], got shape {wc}")
    if len(we) != 4 or we[2] != we[3] or we[1] != wc[0] or we[2] % 2 == 0:
        raise WeightError(
            f"carafe: encoder_weight must be [4 k_up^2, Cm={wc[0]}, k_enc, k_enc] with k_enc odd, "
            f"got shape {we}"
        )
    k = math.isqrt(we[0] // 4)
    if 4 * k * k != we[0] or k % 2 == 0:
        raise WeightError(
            f"carafe: encoder_weight.shape[0] must be 4 k_up^2 with k_up odd (100 for k_up = 5: "
            f"an x2 CARAFEPack with up_group=1), got {we[0]}"
        )
    return wc[1], wc[1], k, {"compressed_channels": wc[0], "encoder_kernel": we[2]}


register_kind(KindInfo(
    name="carafe",
    title="CARAFE (content-aware reassembly, k_up x k_up kernels)",
    default_kernel=5,
    min_kernel=1,
    odd_kernel=True,
    weight_shapes=carafe_weight_shapes,
    macs_per_input_pixel=carafe_macs,
    reference=ref.carafe,
    emitters={"efficient": carafe_efficient, "faithful": carafe_faithful},
    channels=lambda shape: (shape[1], shape[1]),  # compressor_weight [Cm, C, 1, 1]
    fan_in=_fan_in,
    # "box": mmcv's init_weights (compressor Xavier uniform, encoder normal std 0.001, biases
    # 0): the kernels start near uniform, i.e. a k_up x k_up box filter of the nearest x2 map.
    inits=("box", "default"),
    paper="Wang et al. 2019, CARAFE: Content-Aware ReAssembly of FEatures (mmcv CARAFEPack)",
    in_per_out=1,
    params={"compressed_channels": lambda cin, c, k: default_compressed_channels(cin),
            "encoder_kernel": DEFAULT_ENCODER_KERNEL},
    read_weights=_read_weights,
))
