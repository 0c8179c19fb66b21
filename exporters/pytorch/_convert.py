"""Plug-and-play: replace a network's x2 ``nn.ConvTranspose2d`` layers with another kind."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from pixeldcn_core import SpecError, get_kind, layer_kinds

from ._registry import module_for

__all__ = ["ConversionReport", "convert_deconvs", "upsamples_by_two"]


@dataclasses.dataclass
class ConversionReport:
    """What :func:`convert_deconvs` did.

    Attributes:
        kind: the layer kind the deconvolutions were replaced with.
        replaced: ``(module path, what it became)`` for every replaced ``ConvTranspose2d``.
        skipped: ``(module path, why it was kept)`` for every ``ConvTranspose2d`` left alone.
    """

    kind: str
    replaced: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"convert_deconvs(kind={self.kind!r}): replaced {len(self.replaced)}, "
            f"skipped {len(self.skipped)}"
        ]
        lines += [f"  replaced {path}: {what}" for path, what in self.replaced]
        lines += [f"  skipped  {path}: {why}" for path, why in self.skipped]
        return "\n".join(lines)


def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def upsamples_by_two(m: nn.ConvTranspose2d) -> str | None:
    """``None`` when ``m`` maps ``[N, Cin, H, W]`` to exactly ``[N, C, 2H, 2W]`` with no groups or
    dilation; otherwise the reason it does not.

    The output size of a transposed conv is ``(H - 1) s - 2 p + d (k - 1) + op + 1``; with
    ``s = 2, d = 1`` it is ``2H`` iff ``k - 2 - 2p + op = 0`` on both axes.
    """
    stride, dil = _pair(m.stride), _pair(m.dilation)
    if stride != (2, 2):
        return f"stride {stride}, expected (2, 2)"
    if m.groups != 1:
        return f"groups={m.groups}, expected 1"
    if dil != (1, 1):
        return f"dilation {dil}, expected (1, 1)"
    if m.padding_mode != "zeros":
        return f"padding_mode={m.padding_mode!r}, expected 'zeros'"
    k, p, op = _pair(m.kernel_size), _pair(m.padding), _pair(m.output_padding)
    extra = [k[i] - 2 - 2 * p[i] + op[i] for i in (0, 1)]
    if extra != [0, 0]:
        return (
            f"output is not 2H x 2W (kernel_size={k}, padding={p}, output_padding={op} gives "
            f"2H{extra[0]:+d} x 2W{extra[1]:+d})"
        )
    return None


def convert_deconvs(model: nn.Module, kind: str = "pixel_dcl", **kwargs: Any) -> ConversionReport:
    """Replace, in place, every ``nn.ConvTranspose2d`` of ``model`` that up-samples by exactly 2.

    A deconvolution qualifies when it has stride 2, groups 1, dilation 1, zero padding mode and an
    output of exactly 2H x 2W (kernel, padding and output_padding agree). It becomes a layer of
    ``kind`` with the same in / out channels, a bias if it had one, on the same device and dtype
    and in the same train / eval mode, built by the kind's ``from_deconv``: freshly
    initialised, except that DCL keeps the deconvolution's kernel size unless ``kernel_size`` is
    given, and copies its weights when it already computes the same function (square kernel with
    padding ``dcl_padding(k)``). A ``ConvTranspose2d`` called with
    an explicit ``output_size`` is not visible here: check such models by hand.

    Args:
        model: the network, modified in place.
        kind: a registered kind (``pixeldcn_core.layer_kinds()``); aliases like "PixelDCL" work.
        **kwargs: passed to the layer's constructor (e.g. ``kernel_size=5``, ``icnr=False``).

    Returns:
        A :class:`ConversionReport` listing replaced and skipped modules with reasons.

    Raises:
        UnknownKindError: ``kind`` is not registered (the message lists the valid kinds).
        SpecError: ``kwargs`` are invalid for the kind, or a deconvolution's channels do not fit
            the kind's channel rule (``bilinear`` needs Cin = C, ``bilinear_additive`` Cin = 4C);
            the model is then left unchanged.
    """
    info = get_kind(kind)
    if info.scale != 2:
        raise SpecError(
            f"convert_deconvs: kind {info.name!r} has scale {info.scale} (x{info.scale} output), "
            "so it cannot replace an x2 ConvTranspose2d; expected an x2 kind: "
            + ", ".join(k for k in layer_kinds() if get_kind(k).scale == 2)
        )
    cls = module_for(info.name)
    report = ConversionReport(info.name)
    if isinstance(model, nn.ConvTranspose2d):
        report.skipped.append(("", "the root module cannot be replaced in place; wrap it"))
        return report
    targets: list[tuple[str, nn.Module, str, nn.ConvTranspose2d]] = []
    for path, parent in model.named_modules():
        for name, child in parent.named_children():
            if not isinstance(child, nn.ConvTranspose2d):
                continue
            full = f"{path}.{name}" if path else name
            why = upsamples_by_two(child)
            if why is not None:
                report.skipped.append((full, why))
            else:
                targets.append((full, parent, name, child))
    # Build every new layer first, so that bad kwargs leave the model untouched.
    built: dict[int, tuple[nn.Module, str]] = {}
    for full, _, _, old in targets:
        if id(old) not in built:
            try:
                layer, note = cls.from_deconv(old, **kwargs)
            except SpecError as err:
                if info.in_per_out is None:
                    raise
                raise SpecError(  # the kind's channel rule does not fit this deconvolution
                    f"convert_deconvs: cannot replace {full!r} (ConvTranspose2d "
                    f"{old.in_channels} -> {old.out_channels} channels) by {info.name}: {err}; "
                    "the model is unchanged"
                ) from None
            layer.train(old.training)
            built[id(old)] = (layer, note)
    done: set[int] = set()  # a deconv shared by two parents stays shared
    for full, parent, name, old in targets:
        layer, note = built[id(old)]
        setattr(parent, name, layer)
        if id(old) in done:
            report.replaced.append((full, "shared with an already replaced module"))
            continue
        done.add(id(old))
        report.replaced.append((full, f"{type(layer).__name__}({layer.extra_repr()}), {note}"))
    return report
