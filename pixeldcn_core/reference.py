"""The numpy reference of every up-sampling layer: the oracle of every parity test.

Each function is a direct, readable transcription of the definitions in docs/design.md, computed in
float64 whatever the input dtype. Speed is not a goal here; being obviously right is.

Shapes: ``x [N, Cin, H, W]`` -> ``y [N, C, 2H, 2W]``; conv weights ``[out, in, kh, kw]``; every
conv is a cross-correlation with zero 'same' padding and stride 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._errors import InputShapeError, WeightError
from ._specs import LayerSpec

__all__ = [
    "apply",
    "bilinear",
    "bilinear_additive",
    "bilinear_conv",
    "bilinear_x2",
    "carafe",
    "conv2d",
    "dcl",
    "dcl_padding",
    "conv2d_s2_same",
    "dysample",
    "dysample_groups",
    "dysample_init_pos",
    "interleave",
    "ipixel_cl",
    "ipixel_dcl",
    "pixel_dcl",
    "pixel_dcl_mask",
    "pixel_shuffle",
    "place",
    "resize_conv",
    "same_padding_s2",
    "shift",
    "subpixel_conv",
]


def _as64(name: str, a: Any) -> np.ndarray:
    arr = np.asarray(a)
    if not np.issubdtype(arr.dtype, np.floating):
        raise WeightError(f"{name} must be a float array, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _check_input(x: Any, in_channels: int) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise InputShapeError(
            f"x must be 4-D [N, C, H, W], got {x.ndim}-D with shape {tuple(x.shape)}"
        )
    if x.shape[1] != in_channels:
        raise InputShapeError(
            f"x.shape[1]={x.shape[1]} channels, while the weights expect {in_channels}"
        )
    if not np.issubdtype(x.dtype, np.floating):
        raise InputShapeError(f"x must be a float array, got dtype {x.dtype}")
    return x.astype(np.float64)


def _add_bias(y: np.ndarray, bias: Any) -> np.ndarray:
    if bias is None:
        return y
    b = _as64("bias", bias)
    if b.shape != (y.shape[1],):
        raise WeightError(f"bias has shape {b.shape}, expected ({y.shape[1]},)")
    return y + b[None, :, None, None]


def conv2d(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """'Same' cross-correlation: ``x [N, Ci, H, W]``, ``w [Co, Ci, k, k]`` (k odd) -> ``[N, Co, H, W]``."""
    n, ci, h, wd = x.shape
    co, wci, kh, kw = w.shape
    if wci != ci:
        raise InputShapeError(f"conv input has {ci} channels, while the weight expects {wci}")
    ph, pw = kh // 2, kw // 2
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros((n, co, h, wd), dtype=np.float64)
    for r in range(kh):
        for c in range(kw):
            patch = xp[:, :, r : r + h, c : c + wd]  # (N, Ci, H, W), shifted by (r - ph, c - pw)
            y += np.einsum("nihw,oi->nohw", patch, w[:, :, r, c])
    return y


def interleave(y00: np.ndarray, y01: np.ndarray, y10: np.ndarray, y11: np.ndarray) -> np.ndarray:
    """Place four ``[N, C, H, W]`` phases into ``[N, C, 2H, 2W]``: ``y[..., a::2, b::2] = y_ab``."""
    n, c, h, w = y00.shape
    y = np.zeros((n, c, 2 * h, 2 * w), dtype=np.float64)
    y[..., 0::2, 0::2] = y00
    y[..., 0::2, 1::2] = y01
    y[..., 1::2, 0::2] = y10
    y[..., 1::2, 1::2] = y11
    return y


def dcl_padding(k: int) -> tuple[int, int]:
    """TensorFlow 'SAME' (begin, end) cropping of a stride-2 transposed conv with kernel k.

    The full transposed conv has ``2(H-1) + k`` rows; 'SAME' keeps ``2H`` of them, dropping
    ``max(k - 2, 0)`` rows, the smaller half at the beginning: (2, 2) for k = 6, (1, 1) for k = 4,
    (0, 1) for k = 3.
    """
    total = max(k - 2, 0)
    return total // 2, total - total // 2


def dcl(x: Any, weight: Any, bias: Any = None) -> np.ndarray:
    """Regular deconvolution: TF ``conv2d_transpose(stride=2, padding='SAME')``.

    Args:
        x: ``[N, Cin, H, W]``.
        weight: ``[Cin, C, k, k]`` (PyTorch ConvTranspose2d layout).
        bias: optional ``[C]``.

    Returns:
        ``[N, C, 2H, 2W]`` float64.
    """
    w = _as64("weight", weight)
    if w.ndim != 4:
        raise WeightError(f"weight must be 4-D [Cin, C, k, k], got shape {w.shape}")
    x64 = _check_input(x, w.shape[0])
    n, _, h, wd = x64.shape
    k = w.shape[2]
    full = np.zeros((n, w.shape[1], 2 * (h - 1) + k, 2 * (wd - 1) + k), dtype=np.float64)
    for p in range(k):
        for q in range(k):
            # Every input pixel (i, j) scatters into (2i + p, 2j + q).
            full[:, :, p : p + 2 * h - 1 : 2, q : q + 2 * wd - 1 : 2] += np.einsum(
                "nihw,io->nohw", x64, w[:, :, p, q]
            )
    begin, _ = dcl_padding(k)
    y = full[:, :, begin : begin + 2 * h, begin : begin + 2 * wd]
    return _add_bias(y, bias)


def pixel_dcl_mask(k: int) -> np.ndarray:
    """The PixelDCL mask: ``mask[r, c] = 1`` iff ``r + c`` is odd (4-neighbour taps for k = 3)."""
    r, c = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    return ((r + c) % 2 == 1).astype(np.float64)


def pixel_dcl(x: Any, w1: Any, w2: Any, w3: Any, bias: Any = None) -> np.ndarray:
    """PixelDCL (paper Eqn. 3, Figure 6), written exactly as the figure draws it.

    ``F1 = conv(x, w1)``; ``F2 = conv(F1, w2)``; ``S`` interleaves F1 (phase 00) and F2 (phase 11)
    with zeros elsewhere; ``y = S + conv(S, w3 * mask)``.

    Args:
        x: ``[N, Cin, H, W]``.
        w1: ``[C, Cin, k, k]``; w2, w3: ``[C, C, k, k]``; k odd.
        bias: optional ``[C]``.
    """
    w1_, w2_, w3_ = _as64("w1", w1), _as64("w2", w2), _as64("w3", w3)
    LayerSpec.from_weights("pixel_dcl", {"w1": w1_, "w2": w2_, "w3": w3_})
    x64 = _check_input(x, w1_.shape[1])
    f1 = conv2d(x64, w1_)
    f2 = conv2d(f1, w2_)
    zeros = np.zeros_like(f1)
    s = interleave(f1, zeros, zeros, f2)
    m = conv2d(s, w3_ * pixel_dcl_mask(w3_.shape[2]))
    return _add_bias(s + m, bias)


def ipixel_dcl(x: Any, w1: Any, w2: Any, w3: Any, bias: Any = None) -> np.ndarray:
    """iPixelDCL (paper Eqn. 2 with F3, F4 computed in parallel).

    ``F1 = conv(x, w1)``; ``F2 = conv([x, F1], w2)``; ``F3, F4 = split(conv([x, F1, F2], w3))``;
    ``y00 = F1``, ``y11 = F2``, ``y10 = F3``, ``y01 = F4``.

    Args:
        x: ``[N, Cin, H, W]``.
        w1: ``[C, Cin, k, k]``; w2: ``[C, Cin + C, k, k]``; w3: ``[2C, Cin + 2C, k, k]``.
        bias: optional ``[C]``.
    """
    w1_, w2_, w3_ = _as64("w1", w1), _as64("w2", w2), _as64("w3", w3)
    LayerSpec.from_weights("ipixel_dcl", {"w1": w1_, "w2": w2_, "w3": w3_})
    x64 = _check_input(x, w1_.shape[1])
    c = w1_.shape[0]
    f1 = conv2d(x64, w1_)
    f2 = conv2d(np.concatenate([x64, f1], axis=1), w2_)
    f34 = conv2d(np.concatenate([x64, f1, f2], axis=1), w3_)
    f3, f4 = f34[:, :c], f34[:, c:]
    return _add_bias(interleave(f1, f4, f3, f2), bias)


def resize_conv(x: Any, weight: Any, bias: Any = None) -> np.ndarray:
    """Resize-convolution: nearest-neighbour x2 up-sampling, then a 'same' conv ``[C, Cin, k, k]``."""
    w = _as64("weight", weight)
    LayerSpec.from_weights("resize_conv", {"weight": w})
    x64 = _check_input(x, w.shape[1])
    up = np.repeat(np.repeat(x64, 2, axis=2), 2, axis=3)  # (N, Cin, 2H, 2W)
    return _add_bias(conv2d(up, w), bias)


def pixel_shuffle(z: np.ndarray) -> np.ndarray:
    """PyTorch ``pixel_shuffle(z, 2)`` (DepthToSpace, CRD): output channel c at phase (a, b) is
    input channel ``4c + 2a + b``. ``z [N, 4C, H, W]`` -> ``[N, C, 2H, 2W]``."""
    phases = [z[:, 2 * a + b :: 4] for a in (0, 1) for b in (0, 1)]
    return interleave(*phases)


def subpixel_conv(x: Any, weight: Any, bias: Any = None) -> np.ndarray:
    """Sub-pixel convolution: one conv to ``4C`` channels ``[4C, Cin, k, k]``, then pixel shuffle."""
    w = _as64("weight", weight)
    LayerSpec.from_weights("subpixel_conv", {"weight": w})
    x64 = _check_input(x, w.shape[1])
    return _add_bias(pixel_shuffle(conv2d(x64, w)), bias)


def same_padding_s2(k: int) -> tuple[int, int]:
    """TensorFlow 'SAME' (begin, end) zero padding of a stride-2 conv with kernel k over an even
    size: ``max(k - 2, 0)`` in all, the smaller half at the beginning ((0, 1) for k = 3)."""
    total = max(k - 2, 0)
    return total // 2, total - total // 2


def conv2d_s2_same(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Stride-2 cross-correlation with TF 'SAME' padding: ``x [N, Ci, H, W]`` (H, W even),
    ``w [Co, Ci, k, k]`` -> ``[N, Co, H/2, W/2]``; output ``[i, j]`` reads
    ``x[2i + r - begin, 2j + c - begin]`` (zero outside)."""
    n, ci, h, wd = x.shape
    co, wci, k, _ = w.shape
    if wci != ci:
        raise InputShapeError(f"conv input has {ci} channels, while the weight expects {wci}")
    begin, end = same_padding_s2(k)
    xp = np.pad(x, ((0, 0), (0, 0), (begin, end), (begin, end)))
    oh, ow = h // 2, wd // 2
    y = np.zeros((n, co, oh, ow), dtype=np.float64)
    for r in range(k):
        for c in range(k):
            patch = xp[:, :, r : r + 2 * oh - 1 : 2, c : c + 2 * ow - 1 : 2]  # (N, Ci, H/2, W/2)
            y += np.einsum("nihw,oi->nohw", patch, w[:, :, r, c])
    return y


def shift(x: np.ndarray, a: int, b: int) -> np.ndarray:
    """``shift(x, a, b)[.., i, j] = x[.., i + a, j + b]``, zero past the bottom and right edges."""
    y = np.zeros_like(x)
    h, w = x.shape[2], x.shape[3]
    y[..., : h - a, : w - b] = x[..., a:, b:]
    return y


def place(t: np.ndarray, a: int, b: int) -> np.ndarray:
    """The ``2h x 2w`` map holding ``t[i, j]`` at ``(2i + a, 2j + b)`` and zeros elsewhere."""
    n, c, h, w = t.shape
    y = np.zeros((n, c, 2 * h, 2 * w), dtype=np.float64)
    y[..., a::2, b::2] = t
    return y


def ipixel_cl(x: Any, w1: Any, w2: Any, w3: Any, w4: Any, bias: Any = None) -> np.ndarray:
    """iPixelCL (the authors' ``ipixel_cl``): ``x [N, Cin, H, W]`` (H, W even) -> ``[N, C, H, W]``.

    Not an up-sampling layer: it keeps the size. Written exactly as the definition, with
    ``conv_s2`` = :func:`conv2d_s2_same`::

        D1 = place(conv_s2(x, w1), 0, 0)
        D2 = place(conv_s2(concat(shift(x, 1, 1), D1), w2), 1, 1);  S = D1 + D2
        D3 = place(conv_s2(concat(shift(x, 1, 0), S), w3), 1, 0)
        D4 = place(conv_s2(concat(shift(x, 0, 1), S), w4), 0, 1)
        y = D1 + D2 + D3 + D4

    Args:
        x: ``[N, Cin, H, W]`` with H and W even.
        w1: ``[C, Cin, k, k]``; w2, w3, w4: ``[C, Cin + C, k, k]`` (the authors' conv1, conv2,
            conv4, conv5).
        bias: optional ``[C]``.

    Raises:
        InputShapeError: H or W is odd.
    """
    ws = [_as64(f"w{i}", w) for i, w in enumerate((w1, w2, w3, w4), start=1)]
    LayerSpec.from_weights("ipixel_cl", {f"w{i}": w for i, w in enumerate(ws, start=1)})
    x64 = _check_input(x, ws[0].shape[1])
    h, w = x64.shape[2], x64.shape[3]
    if h % 2 or w % 2:
        raise InputShapeError(f"ipixel_cl: H and W must be even, got H x W = {h} x {w}")
    d1 = place(conv2d_s2_same(x64, ws[0]), 0, 0)
    d2 = place(conv2d_s2_same(np.concatenate([shift(x64, 1, 1), d1], axis=1), ws[1]), 1, 1)
    s = d1 + d2
    d3 = place(conv2d_s2_same(np.concatenate([shift(x64, 1, 0), s], axis=1), ws[2]), 1, 0)
    d4 = place(conv2d_s2_same(np.concatenate([shift(x64, 0, 1), s], axis=1), ws[3]), 0, 1)
    return _add_bias(d1 + d2 + d3 + d4, bias)


def carafe(
    x: Any,
    compressor_weight: Any,
    compressor_bias: Any,
    encoder_weight: Any,
    encoder_bias: Any,
    bias: Any = None,
) -> np.ndarray:
    """CARAFE x2 (Wang et al. 2019, Content-Aware ReAssembly of FEatures), as mmcv's CARAFEPack.

    ``z = conv1x1(x, compressor) + b``; ``logits = conv(z, encoder) + b`` ('same', k_enc odd),
    ``[N, 4 k_up^2, H, W]``; the kernels are ``softmax(pixel_shuffle(logits))`` over their
    ``k_up^2`` channels, ``[N, k_up^2, 2H, 2W]``; output pixel ``(2i + a, 2j + b)`` of channel c
    is the sum over the ``k_up x k_up`` neighbourhood of INPUT pixel ``(i, j)`` (zero padded) of
    kernel x ``x[c]``, tap ``t = (dy + r) * k_up + (dx + r)`` weighting ``x[c, i + dy, j + dx]``
    (``r = k_up // 2``). Computed pixel by pixel.

    Args:
        x: ``[N, C, H, W]``.
        compressor_weight: ``[Cm, C, 1, 1]``; compressor_bias: ``[Cm]``.
        encoder_weight: ``[4 k_up^2, Cm, k_enc, k_enc]`` (k_up, k_enc odd); encoder_bias:
            ``[4 k_up^2]``. Encoder channel ``4t + 2a + b`` is tap t of phase (a, b).
        bias: optional ``[C]``, added to every output pixel (not in the paper).

    Returns:
        ``[N, C, 2H, 2W]`` float64.
    """
    wc, bc = _as64("compressor_weight", compressor_weight), _as64("compressor_bias", compressor_bias)
    we, be = _as64("encoder_weight", encoder_weight), _as64("encoder_bias", encoder_bias)
    LayerSpec.from_weights("carafe", {"compressor_weight": wc, "compressor_bias": bc,
                                      "encoder_weight": we, "encoder_bias": be})
    x64 = _check_input(x, wc.shape[1])
    n, c, h, w = x64.shape
    k = math.isqrt(we.shape[0] // 4)
    r = k // 2
    z = conv2d(x64, wc) + bc[None, :, None, None]
    logits = pixel_shuffle(conv2d(z, we) + be[None, :, None, None])  # (N, k^2, 2H, 2W)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    kernels = e / e.sum(axis=1, keepdims=True)
    xp = np.pad(x64, ((0, 0), (0, 0), (r, r), (r, r)))
    y = np.zeros((n, c, 2 * h, 2 * w), dtype=np.float64)
    for oy in range(2 * h):
        for ox in range(2 * w):
            i, j = oy // 2, ox // 2  # the input pixel this output pixel comes from
            patch = xp[:, :, i : i + k, j : j + k].reshape(n, c, k * k)  # taps (dy + r, dx + r)
            y[:, :, oy, ox] = np.einsum("nct,nt->nc", patch, kernels[:, :, oy, ox])
    return _add_bias(y, bias)


#: DySample's offset scope: offsets are ``0.25 * conv1x1(x)`` (the paper's static scope factor).
DYSAMPLE_SCOPE = 0.25


def dysample_groups(channels: int) -> int:
    """DySample's sampling groups for ``channels``: 4 (the authors' default) when it divides C,
    else the largest of 2 and 1 that does. Each group of ``C / groups`` channels shares one set
    of sampling positions."""
    return math.gcd(int(channels), 4)


def dysample_init_pos(groups: int) -> np.ndarray:
    """The authors' ``_init_pos`` for scale 2: ``[2 * groups * 4]``, channel
    ``c * 4 groups + 4 g + 2 a + b`` holds the sub-pixel position of output phase ``(a, b)``,
    in input pixels: ``(b - 1/2) / 2`` for ``c = 0`` (x), ``(a - 1/2) / 2`` for ``c = 1`` (y).
    With zero offsets, output ``(2i + a, 2j + b)`` samples input ``(i + (a - 1/2) / 2,
    j + (b - 1/2) / 2)``: bilinear x2 with half-pixel centres."""
    pos = np.zeros((2, groups, 2, 2), dtype=np.float64)  # (c, g, a, b)
    for a in (0, 1):
        for b in (0, 1):
            pos[0, :, a, b] = (b - 0.5) / 2
            pos[1, :, a, b] = (a - 0.5) / 2
    return pos.reshape(-1)


def dysample(x: Any, offset_weight: Any, offset_bias: Any, bias: Any = None) -> np.ndarray:
    """DySample, x2, "lp" style with the static scope factor (Liu et al. 2023, the authors'
    ``DySample(in_channels, scale=2, style="lp", groups, dyscope=False)``): C = Cin.

    Written as the authors' code computes it::

        o = 0.25 * conv1x1(x, offset_weight, offset_bias) + init_pos      # [N, 8G, H, W]
        o = pixel_shuffle(o)                                               # [N, 2G, 2H, 2W]
        # output (2i + a, 2j + b), group g: x offset o[:, g], y offset o[:, G + g]
        px = j + 1/2 + o[:, g];  py = i + 1/2 + o[:, G + g]                # input pixel units
        grid = (2 px / W - 1, 2 py / H - 1)                                # normalised
        y[:, group g] = grid_sample(x[:, group g], grid, mode="bilinear",
                                    align_corners=False, padding_mode="border")

    ``grid_sample`` with ``align_corners=False`` maps the normalised grid back to the input
    index ``ix = ((gx + 1) W - 1) / 2 = px - 1/2`` (pixel ``j`` has its centre at ``j + 1/2``);
    ``padding_mode="border"`` clamps ``ix`` to ``[0, W - 1]`` (``iy`` to ``[0, H - 1]``); then
    ``y = sum (1 - |ix - u|)(1 - |iy - v|) x[v, u]`` over the four pixels ``u in {floor(ix),
    floor(ix) + 1}``, ``v`` likewise (a neighbour past the border has weight 0). With zero
    offsets this is bilinear x2 (half-pixel centres, edge clamped): ``init_pos`` places output
    ``(2i + a, 2j + b)`` at input ``(i + (a - 1/2) / 2, j + (b - 1/2) / 2)``.

    Groups: channels ``g C/G .. (g + 1) C/G - 1`` form group ``g`` (:func:`dysample_groups`).

    Args:
        x: ``[N, C, H, W]``.
        offset_weight: ``[8 G, C, 1, 1]``, the offset conv; output channel ``c 4G + 4g + 2a + b``
            is coordinate ``c`` (0: x, 1: y) of group ``g`` at phase ``(a, b)``.
        offset_bias: ``[8 G]``.
        bias: optional ``[C]``, added to the output.

    Returns:
        ``[N, C, 2H, 2W]`` float64.
    """
    w = _as64("offset_weight", offset_weight)
    ob = _as64("offset_bias", offset_bias)
    LayerSpec.from_weights("dysample", {"offset_weight": w, "offset_bias": ob})
    x64 = _check_input(x, w.shape[1])
    n, c, h, wd = x64.shape
    groups = w.shape[0] // 8
    cg = c // groups
    o = np.einsum("nihw,oi->nohw", x64, w[:, :, 0, 0]) + ob[None, :, None, None]
    o = DYSAMPLE_SCOPE * o + dysample_init_pos(groups)[None, :, None, None]
    o = pixel_shuffle(o)  # (N, 2G, 2H, 2W): channel c G + g
    cols = np.arange(2 * wd) // 2  # input column j of output column 2j + b
    rows = np.arange(2 * h) // 2
    y = np.zeros((n, c, 2 * h, 2 * wd), dtype=np.float64)
    for g in range(groups):
        gx = 2 * (cols[None, None, :] + 0.5 + o[:, g]) / wd - 1  # (N, 2H, 2W)
        gy = 2 * (rows[None, :, None] + 0.5 + o[:, groups + g]) / h - 1
        ix = np.clip(((gx + 1) * wd - 1) / 2, 0, wd - 1)  # align_corners=False, border
        iy = np.clip(((gy + 1) * h - 1) / 2, 0, h - 1)
        x0, y0 = np.floor(ix).astype(np.int64), np.floor(iy).astype(np.int64)
        fx, fy = ix - x0, iy - y0
        x1, y1 = np.minimum(x0 + 1, wd - 1), np.minimum(y0 + 1, h - 1)  # weight 0 when clipped
        for b_ in range(n):
            xs = x64[b_, g * cg : (g + 1) * cg]  # (Cg, H, W)
            u0, u1, v0, v1 = x0[b_], x1[b_], y0[b_], y1[b_]  # (2H, 2W) each
            ax, ay = fx[b_], fy[b_]
            y[b_, g * cg : (g + 1) * cg] = (
                (1 - ay) * (1 - ax) * xs[:, v0, u0] + (1 - ay) * ax * xs[:, v0, u1]
                + ay * (1 - ax) * xs[:, v1, u0] + ay * ax * xs[:, v1, u1]
            )
    return _add_bias(y, bias)


def apply(kind: str, x: Any, weights: Mapping[str, Any]) -> np.ndarray:
    """Run the reference of ``kind`` on ``x`` with a weight dict (as :func:`build_layer_model` takes).

    A kind without weights takes its channels from ``x``."""
    from ._specs import get_kind

    cin = np.shape(x)[1] if get_kind(kind).weightless and np.ndim(x) == 4 else None
    spec = LayerSpec.from_weights(kind, weights, in_channels=cin)
    checked = spec.check_weights(weights)
    return spec.info.reference(x, **checked)


def bilinear_x2_weights(size: int) -> np.ndarray:
    """``[2 * size, size]`` matrix of bilinear x2 interpolation along one axis, as PyTorch's
    ``interpolate(mode="bilinear", align_corners=False)``: output ``o`` reads the source
    coordinate ``(o + 0.5) / 2 - 0.5``, clamped at 0, between its two neighbours (the second
    clamped at ``size - 1``). Interior rows are 0.25 / 0.75 stencils; the first and last
    output rows copy the edge."""
    m = np.zeros((2 * size, size), dtype=np.float64)
    for o in range(2 * size):
        src = max((o + 0.5) / 2 - 0.5, 0.0)
        i0 = int(np.floor(src))
        i1 = min(i0 + 1, size - 1)
        t = src - i0
        m[o, i0] += 1.0 - t
        m[o, i1] += t
    return m


def bilinear_x2(x: np.ndarray) -> np.ndarray:
    """Bilinear x2 up-sampling (align_corners=False, edges replicated) of ``x [N, C, H, W]``, per
    channel: ``y[n, c, o, p] = sum_ij Mh[o, i] . x[n, c, i, j] . Mw[p, j]``."""
    x = np.asarray(x, dtype=np.float64)
    mh, mw = bilinear_x2_weights(x.shape[2]), bilinear_x2_weights(x.shape[3])
    return np.einsum("oi,ncij,pj->ncop", mh, x, mw)


def bilinear(x: Any, bias: Any = None) -> np.ndarray:
    """Fixed bilinear x2 up-sampling, no weights: ``x [N, C, H, W]`` -> ``[N, C, 2H, 2W]``."""
    x64 = np.asarray(x)
    if x64.ndim != 4:
        raise InputShapeError(f"x must be 4-D [N, C, H, W], got shape {tuple(x64.shape)}")
    return _add_bias(bilinear_x2(_check_input(x64, x64.shape[1])), bias)


def bilinear_conv(x: Any, weight: Any, bias: Any = None) -> np.ndarray:
    """Bilinear x2 up-sampling, then a 'same' conv ``[C, Cin, k, k]`` (k odd, zero padding at
    2H x 2W)."""
    w = _as64("weight", weight)
    LayerSpec.from_weights("bilinear_conv", {"weight": w})
    x64 = _check_input(x, w.shape[1])
    return _add_bias(conv2d(bilinear_x2(x64), w), bias)


def bilinear_additive(x: Any, bias: Any = None) -> np.ndarray:
    """Bilinear additive up-sampling (Wojna et al. 2017): bilinear x2, then each group of 4
    consecutive channels summed: ``x [N, 4C, H, W]`` -> ``[N, C, 2H, 2W]``."""
    x64 = np.asarray(x)
    if x64.ndim != 4 or x64.shape[1] % 4:
        raise InputShapeError(
            f"bilinear_additive: x must be [N, 4C, H, W] (channels a multiple of 4), got shape "
            f"{tuple(x64.shape)}"
        )
    up = bilinear_x2(_check_input(x64, x64.shape[1]))
    n, cin, h2, w2 = up.shape
    y = np.zeros((n, cin // 4, h2, w2), dtype=np.float64)
    for c in range(cin // 4):
        for g in range(4):
            y[:, c] += up[:, 4 * c + g]
    return _add_bias(y, bias)
