"""Layer kinds, their registry, and frozen layer specifications.

One registry (:data:`KINDS`) lists every up-sampling layer kind the project knows. The reference
(``pixeldcn_core.reference``), the ONNX emitters and the test matrix are all driven by it, so a new
kind cannot ship without a reference, an emitter and tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ._errors import SpecError, UnknownKindError, WeightError

__all__ = [
    "FORMS",
    "KINDS",
    "KindInfo",
    "LayerSpec",
    "get_kind",
    "layer_kinds",
]

#: The ways a layer can be written as ONNX. ``efficient``: every output phase computed at input
#: resolution and interleaved by one DepthToSpace. ``faithful``: the paper's Figure 6, i.e. the
#: interleaved 2H x 2W map followed by a full-resolution (masked) convolution.
FORMS = ("efficient", "faithful")


def _odd(k: int) -> bool:
    return k % 2 == 1


@dataclasses.dataclass(frozen=True)
class KindInfo:
    """What the registry knows about one up-sampling layer kind.

    Attributes:
        name: registry name, e.g. ``"pixel_dcl"``.
        title: human-readable name.
        default_kernel: kernel size used when none is given.
        min_kernel: smallest kernel size allowed.
        odd_kernel: whether the kernel size must be odd ('same' padding needs it).
        forms: ONNX forms the builder can write for this kind; the first is the default.
        weight_shapes: ``(in_channels, out_channels, k) -> {name: shape}`` of the required weights.
        flops_per_input_pixel: ``(in_channels, out_channels, k) -> MACs`` of useful work per input
            pixel (masked or structurally zero taps not counted), per batch element.
    """

    name: str
    title: str
    default_kernel: int
    min_kernel: int
    odd_kernel: bool
    forms: tuple[str, ...]
    weight_shapes: Callable[[int, int, int], dict[str, tuple[int, ...]]]
    macs_per_input_pixel: Callable[[int, int, int], int]

    def check_kernel(self, k: Any) -> int:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise SpecError(
                f"{self.name}: kernel_size must be an int, got {k!r} ({type(k).__name__})"
            )
        k = int(k)
        if k < self.min_kernel or (self.odd_kernel and not _odd(k)):
            rule = "an odd integer" if self.odd_kernel else "an integer"
            raise SpecError(
                f"{self.name}: kernel_size must be {rule} >= {self.min_kernel}, got {k}"
            )
        return k


def _mask_taps(k: int) -> int:
    """Number of taps of a k x k kernel with r + c odd (the PixelDCL mask)."""
    return (k * k) // 2


KINDS: dict[str, KindInfo] = {
    info.name: info
    for info in (
        KindInfo(
            name="dcl",
            title="deconvolution (transposed conv, TF 'SAME')",
            default_kernel=6,
            min_kernel=2,
            odd_kernel=False,
            forms=("efficient",),
            weight_shapes=lambda cin, c, k: {"weight": (cin, c, k, k)},
            macs_per_input_pixel=lambda cin, c, k: cin * c * k * k,
        ),
        KindInfo(
            name="pixel_dcl",
            title="PixelDCL",
            default_kernel=3,
            min_kernel=3,
            odd_kernel=True,
            forms=("efficient", "faithful"),
            weight_shapes=lambda cin, c, k: {
                "w1": (c, cin, k, k),
                "w2": (c, c, k, k),
                "w3": (c, c, k, k),
            },
            macs_per_input_pixel=lambda cin, c, k: (
                k * k * cin * c + k * k * c * c + 2 * _mask_taps(k) * c * c
            ),
        ),
        KindInfo(
            name="ipixel_dcl",
            title="iPixelDCL",
            default_kernel=3,
            min_kernel=1,
            odd_kernel=True,
            forms=("efficient", "faithful"),
            weight_shapes=lambda cin, c, k: {
                "w1": (c, cin, k, k),
                "w2": (c, cin + c, k, k),
                "w3": (2 * c, cin + 2 * c, k, k),
            },
            macs_per_input_pixel=lambda cin, c, k: (
                k * k * (c * cin + c * (cin + c) + 2 * c * (cin + 2 * c))
            ),
        ),
        KindInfo(
            name="resize_conv",
            title="resize-convolution (nearest x2 + conv)",
            default_kernel=3,
            min_kernel=1,
            odd_kernel=True,
            forms=("efficient", "faithful"),
            weight_shapes=lambda cin, c, k: {"weight": (c, cin, k, k)},
            # Nearest x2 then a k x k conv: each output phase is a ((k+1)/2)^2-tap conv at input
            # resolution (the k x k taps that read the same input pixel add up).
            macs_per_input_pixel=lambda cin, c, k: 4 * cin * c * ((k + 1) // 2) ** 2,
        ),
        KindInfo(
            name="subpixel_conv",
            title="sub-pixel convolution (conv + pixel shuffle)",
            default_kernel=3,
            min_kernel=1,
            odd_kernel=True,
            forms=("efficient",),
            weight_shapes=lambda cin, c, k: {"weight": (4 * c, cin, k, k)},
            macs_per_input_pixel=lambda cin, c, k: 4 * c * cin * k * k,
        ),
    )
}


def layer_kinds() -> tuple[str, ...]:
    """Names of every registered up-sampling layer kind, in registry order."""
    return tuple(KINDS)


def get_kind(kind: str) -> KindInfo:
    """The registry entry of ``kind``; raises :class:`UnknownKindError` listing the valid names."""
    if not isinstance(kind, str):
        raise UnknownKindError(f"kind must be a str, got {kind!r} ({type(kind).__name__})")
    normalised = kind.strip().lower().replace("-", "_")
    normalised = {"pixeldcl": "pixel_dcl", "ipixeldcl": "ipixel_dcl"}.get(normalised, normalised)
    if normalised not in KINDS:
        raise UnknownKindError(
            f"unknown up-sampling layer kind {kind!r}; expected one of {', '.join(KINDS)}"
        )
    return KINDS[normalised]


def _positive_int(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise SpecError(f"{field} must be a positive int, got {value!r}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """A validated up-sampling layer: ``x [N, in_channels, H, W] -> y [N, out_channels, 2H, 2W]``.

    Args:
        kind: a registered kind name (see :func:`layer_kinds`).
        in_channels: channels of the input ``x``.
        out_channels: channels ``C`` of the output ``y``.
        kernel_size: kernel size ``k``; ``None`` takes the kind's default.
        bias: whether a per-channel bias ``[C]`` is added to every output pixel.

    >>> LayerSpec("pixel_dcl", 8, 4).weight_shapes()
    {'w1': (4, 8, 3, 3), 'w2': (4, 4, 3, 3), 'w3': (4, 4, 3, 3)}
    """

    kind: str
    in_channels: int
    out_channels: int
    kernel_size: int | None = None
    bias: bool = False

    def __post_init__(self) -> None:
        info = get_kind(self.kind)
        object.__setattr__(self, "kind", info.name)
        object.__setattr__(self, "in_channels", _positive_int("in_channels", self.in_channels))
        object.__setattr__(self, "out_channels", _positive_int("out_channels", self.out_channels))
        k = info.default_kernel if self.kernel_size is None else self.kernel_size
        object.__setattr__(self, "kernel_size", info.check_kernel(k))
        if not isinstance(self.bias, bool):
            raise SpecError(f"bias must be a bool, got {self.bias!r}")

    @property
    def info(self) -> KindInfo:
        return KINDS[self.kind]

    @property
    def k(self) -> int:
        assert self.kernel_size is not None  # set in __post_init__
        return self.kernel_size

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of the weights this layer needs, bias included when ``bias`` is set."""
        shapes = self.info.weight_shapes(self.in_channels, self.out_channels, self.k)
        if self.bias:
            shapes["bias"] = (self.out_channels,)
        return shapes

    def macs_per_input_pixel(self) -> int:
        """Useful multiply-accumulates per input pixel and batch element."""
        return self.info.macs_per_input_pixel(self.in_channels, self.out_channels, self.k)

    @classmethod
    def from_weights(cls, kind: str, weights: Mapping[str, Any]) -> LayerSpec:
        """Infer the spec from a weight dict, then check every weight against it.

        Raises:
            WeightError: a weight is missing, unexpected, not 4-D, or mis-shaped.
        """
        info = get_kind(kind)
        if not isinstance(weights, Mapping):
            raise WeightError(
                f"{info.name}: weights must be a dict of arrays, got {type(weights).__name__}"
            )
        first = "weight" if "weight" in info.weight_shapes(1, 1, 1) else "w1"
        if first not in weights:
            raise WeightError(
                f"{info.name}: missing weight {first!r}; expected keys "
                f"{sorted(info.weight_shapes(1, 1, 1))} (+ optional 'bias'), got {sorted(weights)}"
            )
        w = np.asarray(weights[first])
        if w.ndim != 4 or w.shape[2] != w.shape[3]:
            raise WeightError(
                f"{info.name}: {first} must be 4-D with a square kernel, got shape {tuple(w.shape)}"
            )
        k = int(w.shape[2])
        if info.name == "dcl":
            cin, c = int(w.shape[0]), int(w.shape[1])
        elif info.name == "subpixel_conv":
            if w.shape[0] % 4:
                raise WeightError(
                    f"subpixel_conv: weight.shape[0] must be 4*C (a multiple of 4), "
                    f"got {w.shape[0]}"
                )
            cin, c = int(w.shape[1]), int(w.shape[0]) // 4
        else:
            cin, c = int(w.shape[1]), int(w.shape[0])
        try:
            spec = cls(info.name, cin, c, k, bias=weights.get("bias") is not None)
        except SpecError as err:
            raise WeightError(f"{first} of shape {tuple(w.shape)}: {err}") from None
        spec.check_weights(weights)
        return spec

    def check_weights(self, weights: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Check ``weights`` against this spec; returns them as float numpy arrays.

        Every problem is reported at once: missing, unexpected and mis-shaped keys.
        """
        expected = self.weight_shapes()
        given = {name: value for name, value in weights.items() if value is not None}
        problems: list[str] = []
        missing = sorted(set(expected) - set(given))
        unexpected = sorted(set(given) - set(expected) - {"bias"})
        if missing:
            problems.append(f"missing {missing}")
        if unexpected:
            problems.append(f"unexpected {unexpected}")
        if "bias" in given and not self.bias:
            expected = {**expected, "bias": (self.out_channels,)}
        out: dict[str, np.ndarray] = {}
        for name in sorted(set(given) & set(expected)):
            arr = np.asarray(given[name])
            if not np.issubdtype(arr.dtype, np.floating):
                problems.append(f"{name} has dtype {arr.dtype}, expected a float dtype")
            elif tuple(arr.shape) != expected[name]:
                problems.append(
                    f"{name} has shape {tuple(arr.shape)}, expected {expected[name]}"
                )
            elif not np.all(np.isfinite(arr)):
                problems.append(f"{name} holds NaN or Inf values")
            out[name] = arr
        if problems:
            raise WeightError(
                f"{self.kind} (in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"kernel_size={self.k}): " + "; ".join(problems)
            )
        return out

    def random_weights(self, seed: int = 0, *, scale: float | None = None) -> dict[str, np.ndarray]:
        """Seeded random float32 weights (He-style scale), for tests, demos and benchmarks."""
        rng = np.random.default_rng(seed)
        out: dict[str, np.ndarray] = {}
        for name, shape in self.weight_shapes().items():
            if name == "bias":
                out[name] = rng.standard_normal(shape).astype(np.float32) * 0.1
                continue
            fan_in = int(np.prod(shape[1:])) if self.kind != "dcl" else shape[0] * shape[2] ** 2 // 4
            std = scale if scale is not None else float(np.sqrt(2.0 / max(fan_in, 1)))
            out[name] = (rng.standard_normal(shape) * std).astype(np.float32)
        return out
