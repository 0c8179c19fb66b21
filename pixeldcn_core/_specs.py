"""Layer kinds, their registry, and frozen layer specifications.

One registry lists every up-sampling layer kind the project knows. A kind's :class:`KindInfo`
holds everything the project knows about it: spec validation and defaults, the numpy reference,
the ONNX emitter of each form, whether it interleaves phases, how an affine map folds into it,
its initialisations. Every other module (the reference's :func:`~pixeldcn_core.reference.apply`,
:func:`~pixeldcn_core.emit_layer`, the exporters, the benchmarks and the test matrix) reads the
registry instead of naming kinds, so a kind registered with :func:`register_kind` reaches all of
them, and a new kind cannot ship without a reference, an emitter and tests.

The built-in kinds are registered by their modules in :mod:`pixeldcn_core.kinds` (one per kind)
when the package is imported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from ._errors import SpecError, UnknownKindError, WeightError

if TYPE_CHECKING:
    from ._builder import GraphBuilder

__all__ = [
    "FORMS",
    "KINDS",
    "Emitter",
    "KindInfo",
    "LayerSpec",
    "get_kind",
    "layer_kinds",
    "register_kind",
    "registered_kind",
    "unregister_kind",
]

#: The ways a layer can be written as ONNX. ``efficient``: every output phase computed at input
#: resolution and interleaved by one DepthToSpace. ``faithful``: the paper's Figure 6, i.e. the
#: interleaved 2H x 2W map followed by a full-resolution (masked) convolution.
FORMS = ("efficient", "faithful")

#: ``emitter(builder, x, spec, weights, interleave) -> y``: writes one form of a kind into a graph
#: (weights already checked against ``spec``) and returns the name of its output tensor.
Emitter = Callable[["GraphBuilder", str, "LayerSpec", Mapping[str, np.ndarray], str], str]
#: ``fold(spec, weights, scale) -> weights``: the layer ``scale[c] * layer(x)`` per output channel
#: (float64, bias excluded; the caller adds ``scale * bias + shift``), or ``None`` when the kind
#: cannot absorb it exactly.
Fold = Callable[["LayerSpec", Mapping[str, np.ndarray], np.ndarray], "dict[str, np.ndarray] | None"]
#: ``read_weights(shapes) -> (in_channels, out_channels, k, params)``: the spec of a kind whose
#: weights do not follow ``[C, Cin, k, k]``, read from the shapes of all its weights (name ->
#: shape); raises :class:`WeightError` when they do not fit together.
ReadWeights = Callable[[Mapping[str, tuple[int, ...]]], tuple[int, int, int, dict[str, int]]]


def _odd(k: int) -> bool:
    return k % 2 == 1


def _fan_in_conv(name: str, shape: tuple[int, ...]) -> int:
    return int(np.prod(shape[1:]))


def _channels_conv(shape: tuple[int, ...]) -> tuple[int, int]:
    return int(shape[1]), int(shape[0])  # [C, Cin, k, k]


@dataclasses.dataclass(frozen=True)
class KindInfo:
    """Everything the project knows about one up-sampling layer kind.

    Attributes:
        name: registry name, e.g. ``"pixel_dcl"`` (lowercase, ``_`` separated).
        title: human-readable name.
        default_kernel: kernel size used when none is given.
        min_kernel: smallest kernel size allowed.
        odd_kernel: whether the kernel size must be odd ('same' padding needs it).
        weight_shapes: ``(in_channels, out_channels, k) -> {name: shape}`` of the required
            weights, in the order the PyTorch functional form takes them.
        macs_per_input_pixel: ``(in_channels, out_channels, k) -> MACs`` of useful work per input
            pixel (masked or structurally zero taps not counted), per batch element.
        reference: the numpy oracle ``f(x, **weights) -> y`` (float64).
        emitters: form -> :data:`Emitter`; the first form is the default.
        channels: the first weight's shape -> ``(in_channels, out_channels)``.
        interleaves: whether the efficient form interleaves four phases (so that the
            ``interleave`` option applies to it).
        fold: how a per-channel affine map after the layer folds into its weights (:data:`Fold`),
            or ``None`` when it cannot.
        fan_in: ``(weight name, shape) -> fan-in`` of the seeded random weights (He scale).
        inits: names of the initialisations the PyTorch module accepts; the first is the default.
        aliases: other spellings :func:`get_kind` accepts (after lower-casing, ``-`` -> ``_``).
        scale: the up-sampling factor (output is ``scale * H x scale * W``; 1 for a layer that
            keeps the size).
        size_multiple: input height and width must be multiples of this (1: any size).
        paper: where the kind comes from, for docs and reports.
        in_per_out: when set, the output channels are fixed by the input ones:
            ``in_channels == in_per_out * out_channels`` (1: the kind keeps the channels, e.g.
            bilinear x2, CARAFE, DySample; 4: bilinear-additive sums groups of 4). ``None``: C is
            free (a conv chooses it).
        max_kernel: largest kernel size allowed (``None``: no limit). A kind without a kernel
            sets ``default_kernel = min_kernel = max_kernel = 1``.
        params: the kind's extra hyper-parameters (beyond channels and kernel), name -> default:
            an int, or ``(in_channels, out_channels, k) -> int``. :class:`LayerSpec` holds their
            values, and ``weight_shapes`` and ``macs_per_input_pixel`` receive them as keyword
            arguments (e.g. CARAFE's ``compressed_channels`` and ``encoder_kernel``).
        read_weights: how :meth:`LayerSpec.from_weights` reads the spec (with ``params``) from
            the weights' shapes (:data:`ReadWeights`); ``None``: from the first weight, a
            ``[.., .., k, k]`` conv kernel read by ``channels``.

    A kind may have no weights at all (``weight_shapes`` returns ``{}``; an optional ``bias``
    stays possible): its spec cannot be read from a weight dict, so
    :meth:`LayerSpec.from_weights` and the builders take ``in_channels`` for it.
    """

    name: str
    title: str
    default_kernel: int
    min_kernel: int
    odd_kernel: bool
    weight_shapes: Callable[[int, int, int], dict[str, tuple[int, ...]]]
    macs_per_input_pixel: Callable[[int, int, int], int]
    reference: Callable[..., np.ndarray]
    emitters: Mapping[str, Emitter]
    channels: Callable[[tuple[int, ...]], tuple[int, int]] = _channels_conv
    interleaves: bool = False
    fold: Fold | None = None
    fan_in: Callable[[str, tuple[int, ...]], int] = _fan_in_conv
    inits: tuple[str, ...] = ("default",)
    aliases: tuple[str, ...] = ()
    scale: int = 2
    size_multiple: int = 1
    paper: str = ""
    in_per_out: int | None = None
    max_kernel: int | None = None
    params: Mapping[str, int | Callable[[int, int, int], int]] = dataclasses.field(
        default_factory=dict)
    read_weights: ReadWeights | None = None

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.lower() or not self.name.isidentifier():
            raise SpecError(f"kind name {self.name!r}: expected a lowercase identifier")
        if not self.emitters:
            raise SpecError(f"{self.name}: expected at least one ONNX form in emitters")
        unknown = sorted(set(self.emitters) - set(FORMS))
        if unknown:
            raise SpecError(f"{self.name}: unknown forms {unknown}; expected some of {FORMS}")
        if not self.inits:
            raise SpecError(f"{self.name}: inits must name at least the default initialisation")
        if self.in_per_out is not None and (
            isinstance(self.in_per_out, bool) or not isinstance(self.in_per_out, int)
            or self.in_per_out < 1
        ):
            raise SpecError(f"{self.name}: in_per_out must be a positive int or None, "
                            f"got {self.in_per_out!r}")
        if self.max_kernel is not None and not (
            self.min_kernel <= self.default_kernel <= self.max_kernel
        ):
            raise SpecError(f"{self.name}: expected min_kernel <= default_kernel <= max_kernel, got "
                            f"{self.min_kernel}, {self.default_kernel}, {self.max_kernel}")
        object.__setattr__(self, "emitters", dict(self.emitters))
        object.__setattr__(self, "params", dict(self.params))

    def resolve_params(
        self, in_channels: int, out_channels: int, k: int, given: Mapping[str, Any] | None
    ) -> tuple[tuple[str, int], ...]:
        """The values of :attr:`params` (``given`` over the defaults), checked positive ints.

        Raises:
            SpecError: an unknown name, or a value that is not a positive int.
        """
        given = dict(given or {})
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            expected = ", ".join(self.params) or "none"
            raise SpecError(f"{self.name}: unknown parameters {unknown}; expected {expected}")
        out = []
        for name, default in self.params.items():
            value = given.get(name)
            if value is None:
                value = default(in_channels, out_channels, k) if callable(default) else default
            out.append((name, _positive_int(f"{self.name}: {name}", value)))
        return tuple(out)

    @property
    def forms(self) -> tuple[str, ...]:
        """ONNX forms the builder can write for this kind; the first is the default."""
        return tuple(self.emitters)

    def _example_shapes(self) -> dict[str, tuple[int, ...]]:
        return self.weight_shapes(self.in_per_out or 1, 1, self.default_kernel)

    @property
    def first_weight(self) -> str | None:
        """The weight whose shape tells the spec (``weight`` or ``w1``); ``None`` when the kind
        has no weights."""
        return next(iter(self._example_shapes()), None)

    @property
    def weightless(self) -> bool:
        """Whether the kind has no weights (an optional bias aside), e.g. fixed bilinear x2."""
        return not self._example_shapes()

    def check_kernel(self, k: Any) -> int:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise SpecError(
                f"{self.name}: kernel_size must be an int, got {k!r} ({type(k).__name__})"
            )
        k = int(k)
        if self.max_kernel == self.min_kernel and k != self.min_kernel:
            raise SpecError(
                f"{self.name}: kernel_size must be {self.min_kernel} (the kind has no kernel "
                f"size to choose), got {k}"
            )
        if (k < self.min_kernel or (self.odd_kernel and not _odd(k))
                or (self.max_kernel is not None and k > self.max_kernel)):
            rule = "an odd integer" if self.odd_kernel else "an integer"
            top = "" if self.max_kernel is None else f" and <= {self.max_kernel}"
            raise SpecError(
                f"{self.name}: kernel_size must be {rule} >= {self.min_kernel}{top}, got {k}"
            )
        return k

    def out_channels_for(self, in_channels: int) -> int:
        """The output channels the kind's rule gives for ``in_channels`` (``in_per_out`` set).

        Raises:
            SpecError: the kind has no channel rule, or ``in_channels`` does not fit it.
        """
        r = self.in_per_out
        if r is None:
            raise SpecError(f"{self.name}: out_channels is free (a conv chooses it); give it")
        if in_channels % r:
            raise SpecError(
                f"{self.name}: in_channels must be a multiple of {r} (C = Cin / {r}), "
                f"got {in_channels}"
            )
        return in_channels // r

    def check_channels(self, in_channels: int, out_channels: int) -> None:
        """SpecError unless ``(in_channels, out_channels)`` fits the kind's channel rule."""
        r = self.in_per_out
        if r is None or in_channels == r * out_channels:
            return
        if r == 1:
            raise SpecError(
                f"{self.name}: out_channels must equal in_channels (the kind keeps the "
                f"channels), got in_channels={in_channels}, out_channels={out_channels}"
            )
        raise SpecError(
            f"{self.name}: in_channels must be {r} x out_channels (C = Cin / {r}), got "
            f"in_channels={in_channels}, out_channels={out_channels}"
        )


#: The registry: kind name -> :class:`KindInfo`, in registration order (the built-in kinds'
#: modules are imported sorted by name, so theirs is alphabetical). Read it through
#: :func:`layer_kinds` and :func:`get_kind`; change it through :func:`register_kind`.
KINDS: dict[str, KindInfo] = {}


def _normalise(kind: str) -> str:
    return kind.strip().lower().replace("-", "_")


def register_kind(info: KindInfo, *, replace: bool = False) -> KindInfo:
    """Add a layer kind to the registry; every part of pixeldcn sees it from then on.

    Raises:
        SpecError: ``info`` is not a :class:`KindInfo`, or the name (or an alias) is taken and
            ``replace`` is false.
    """
    if not isinstance(info, KindInfo):
        raise SpecError(f"register_kind expects a KindInfo, got {type(info).__name__}")
    taken = {info.name, *(_normalise(a) for a in info.aliases)} & (
        set(KINDS) | {_normalise(a) for i in KINDS.values() for a in i.aliases}
    )
    if taken and not replace and not (info.name in KINDS and KINDS[info.name] is info):
        raise SpecError(f"kind {info.name!r}: {sorted(taken)} already registered")
    KINDS[info.name] = info
    return info


def unregister_kind(kind: str) -> KindInfo:
    """Remove a kind from the registry (tests and plugins); returns its entry."""
    return KINDS.pop(get_kind(kind).name)


@contextmanager
def registered_kind(info: KindInfo) -> Iterator[KindInfo]:
    """Register ``info`` for the duration of a ``with`` block (a test's toy kind)."""
    register_kind(info)
    try:
        yield info
    finally:
        KINDS.pop(info.name, None)


def layer_kinds() -> tuple[str, ...]:
    """Names of every registered up-sampling layer kind, in registry order."""
    return tuple(KINDS)


def get_kind(kind: str) -> KindInfo:
    """The registry entry of ``kind``; raises :class:`UnknownKindError` listing the valid names.

    Accepts any case, ``-`` for ``_`` and each kind's aliases (``"PixelDCL"``, ``"pixel-dcl"``).
    """
    if isinstance(kind, KindInfo):
        return get_kind(kind.name)
    if not isinstance(kind, str):
        raise UnknownKindError(f"kind must be a str, got {kind!r} ({type(kind).__name__})")
    normalised = _normalise(kind)
    if normalised in KINDS:
        return KINDS[normalised]
    for info in KINDS.values():
        if normalised in (_normalise(a) for a in info.aliases):
            return info
    raise UnknownKindError(
        f"unknown up-sampling layer kind {kind!r}; expected one of {', '.join(KINDS)}"
    )


def _positive_int(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise SpecError(f"{field} must be a positive int, got {value!r}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """A validated layer: ``x [N, in_channels, H, W] -> y [N, out_channels, s*H, s*W]``.

    ``s`` is the kind's :attr:`KindInfo.scale`: 2 for every up-sampling kind, 1 for a kind that
    keeps the size (``ipixel_cl``).

    Args:
        kind: a registered kind name (see :func:`layer_kinds`).
        in_channels: channels of the input ``x``.
        out_channels: channels ``C`` of the output ``y``; ``None`` derives it for a kind whose
            channels are fixed by ``in_channels`` (:attr:`KindInfo.in_per_out`).
        kernel_size: kernel size ``k``; ``None`` takes the kind's default.
        bias: whether a per-channel bias ``[C]`` is added to every output pixel.
        params: values of the kind's extra hyper-parameters (:attr:`KindInfo.params`); missing
            ones take the kind's defaults. Held as ``(name, value)`` pairs in the kind's order;
            read them with :attr:`param_values`.

    >>> LayerSpec("pixel_dcl", 8, 4).weight_shapes()
    {'w1': (4, 8, 3, 3), 'w2': (4, 4, 3, 3), 'w3': (4, 4, 3, 3)}
    """

    kind: str
    in_channels: int
    out_channels: int = None  # type: ignore[assignment]  # None: derived (see Args)
    kernel_size: int | None = None
    bias: bool = False
    params: Any = ()

    def __post_init__(self) -> None:
        info = get_kind(self.kind)
        object.__setattr__(self, "kind", info.name)
        cin = _positive_int("in_channels", self.in_channels)
        object.__setattr__(self, "in_channels", cin)
        c = info.out_channels_for(cin) if self.out_channels is None else self.out_channels
        object.__setattr__(self, "out_channels", _positive_int("out_channels", c))
        info.check_channels(cin, self.out_channels)
        k = info.default_kernel if self.kernel_size is None else self.kernel_size
        object.__setattr__(self, "kernel_size", info.check_kernel(k))
        if not isinstance(self.bias, bool):
            raise SpecError(f"bias must be a bool, got {self.bias!r}")
        given = self.params
        if not isinstance(given, Mapping):
            try:
                given = dict(given)
            except (TypeError, ValueError):
                raise SpecError(f"params must be a dict of ints, got {self.params!r}") from None
        resolved = info.resolve_params(self.in_channels, self.out_channels, self.k, given)
        object.__setattr__(self, "params", resolved)

    @property
    def param_values(self) -> dict[str, int]:
        """The kind's extra hyper-parameters, name -> value (empty for most kinds)."""
        return dict(self.params)

    @property
    def info(self) -> KindInfo:
        return KINDS[self.kind]

    @property
    def k(self) -> int:
        assert self.kernel_size is not None  # set in __post_init__
        return self.kernel_size

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of the weights this layer needs, bias included when ``bias`` is set."""
        shapes = self.info.weight_shapes(self.in_channels, self.out_channels, self.k,
                                         **self.param_values)
        if self.bias:
            shapes["bias"] = (self.out_channels,)
        return shapes

    def macs_per_input_pixel(self) -> int:
        """Useful multiply-accumulates per input pixel and batch element."""
        return self.info.macs_per_input_pixel(self.in_channels, self.out_channels, self.k,
                                              **self.param_values)

    @classmethod
    def from_weights(
        cls, kind: str, weights: Mapping[str, Any], *, in_channels: int | None = None
    ) -> LayerSpec:
        """Infer the spec from a weight dict, then check every weight against it.

        Args:
            kind: a registered kind.
            weights: the layer's weights (see :meth:`weight_shapes`), optional ``bias``.
            in_channels: needed for a kind without weights (:attr:`KindInfo.weightless`),
                unless a ``bias`` and the kind's channel rule tell it; for other kinds, when
                given, it must agree with the weights.

        Raises:
            WeightError: a weight is missing, unexpected, not 4-D, or mis-shaped, or
                ``in_channels`` is missing or disagrees.
        """
        info = get_kind(kind)
        if not isinstance(weights, Mapping):
            raise WeightError(
                f"{info.name}: weights must be a dict of arrays, got {type(weights).__name__}"
            )
        if info.weightless:
            return cls._from_bias(info, weights, in_channels)
        if info.read_weights is not None:
            return cls._read_weights(info, weights, in_channels)
        first = info.first_weight
        assert first is not None  # the kind has weights
        if first not in weights:
            raise WeightError(
                f"{info.name}: missing weight {first!r}; expected keys "
                f"{sorted(info.weight_shapes(1, 1, info.default_kernel))} (+ optional 'bias'), "
                f"got {sorted(weights)}"
            )
        w = np.asarray(weights[first])
        if w.ndim != 4 or w.shape[2] != w.shape[3]:
            raise WeightError(
                f"{info.name}: {first} must be 4-D with a square kernel, got shape {tuple(w.shape)}"
            )
        k = int(w.shape[2])
        cin, c = info.channels(tuple(int(d) for d in w.shape))
        try:
            spec = cls(info.name, cin, c, k, bias=weights.get("bias") is not None)
        except SpecError as err:
            raise WeightError(f"{first} of shape {tuple(w.shape)}: {err}") from None
        if in_channels is not None and in_channels != cin:
            raise WeightError(
                f"{info.name}: in_channels={in_channels}, while {first} of shape "
                f"{tuple(w.shape)} takes {cin}"
            )
        spec.check_weights(weights)
        return spec

    @classmethod
    def _from_bias(cls, info: KindInfo, weights: Mapping[str, Any], in_channels: int | None
                   ) -> LayerSpec:
        """The spec of a kind without weights: channels from ``in_channels`` or the bias."""
        bias = weights.get("bias")
        c = None if bias is None else int(np.asarray(bias).size)
        if in_channels is None:
            if c is None or info.in_per_out is None:
                raise WeightError(
                    f"{info.name} has no weights to read the channels from: give in_channels "
                    f"(got weights {sorted(weights)})"
                )
            in_channels = info.in_per_out * c
        try:
            if c is None:
                c = info.out_channels_for(in_channels)
            spec = cls(info.name, in_channels, c, info.default_kernel, bias=bias is not None)
        except SpecError as err:
            raise WeightError(f"{err}") from None
        spec.check_weights(weights)
        return spec

    @classmethod
    def _read_weights(cls, info: KindInfo, weights: Mapping[str, Any], in_channels: int | None
                      ) -> LayerSpec:
        """The spec of a kind with :attr:`KindInfo.read_weights`, from every weight's shape."""
        assert info.read_weights is not None
        expected = sorted(info.weight_shapes(1, 1, info.default_kernel))
        missing = sorted(set(expected) - {n for n, v in weights.items() if v is not None})
        if missing:
            raise WeightError(
                f"{info.name}: missing weights {missing}; expected keys {expected} (+ optional "
                f"'bias'), got {sorted(weights)}"
            )
        shapes = {name: tuple(int(d) for d in np.shape(weights[name])) for name in expected}
        cin, c, k, params = info.read_weights(shapes)
        try:
            spec = cls(info.name, cin, c, k, bias=weights.get("bias") is not None, params=params)
        except SpecError as err:
            raise WeightError(f"{info.name} weights of shapes {shapes}: {err}") from None
        if in_channels is not None and in_channels != cin:
            raise WeightError(
                f"{info.name}: in_channels={in_channels}, while weights of shapes {shapes} take {cin}"
            )
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
                f"kernel_size={self.k}"
                + "".join(f", {n}={v}" for n, v in self.params) + "): " + "; ".join(problems)
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
            fan_in = self.info.fan_in(name, shape)
            std = scale if scale is not None else float(np.sqrt(2.0 / max(fan_in, 1)))
            out[name] = (rng.standard_normal(shape) * std).astype(np.float32)
        return out
