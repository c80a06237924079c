"""Redaction: remove structure from an image so that only a good prediction can restore it.

Spatial redactions remove pixels (the DejaVu paper, section 3.1): :class:`RandomPixels`,
:class:`Checkerboard`, :class:`RandomBlocks`. Spectral redactions remove frequencies of the
orthonormal 2-D DCT of each ``b x b`` block: :class:`LowPass`, :class:`HighPass`, :class:`BandStop`.
Each of these six works on ``(B, C, H, W)`` and has a functional twin with the same defaults;
:func:`build` makes one from a name (for configs), :class:`Compose` chains several and
:class:`RandomChoice` picks one per call. A new redaction is a :class:`Redaction` subclass plus
``REGISTRY["name"] = Class``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .arguments import matches
from .dct import block_frequency, dct2, idct2

__all__ = [
    "random_pixels", "checkerboard", "random_blocks", "random_block_mask", "lowpass", "highpass", "bandstop",
    "RandomPixels", "Checkerboard", "RandomBlocks", "LowPass", "HighPass", "BandStop",
    "Compose", "RandomChoice", "build", "as_redaction", "check_image", "REGISTRY",
]

Fill = float | str


# ---------------------------------------------------------------------------------- checks
def check_image(x: Tensor, fn: str, name: str = "image") -> None:
    """Raise a ``TypeError``/``ValueError`` naming ``fn`` and ``name`` unless ``x`` is a floating-point
    ``(B, C, H, W)`` tensor."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{fn}: {name} must have shape (B, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{fn}: {name} must be floating point, got dtype {x.dtype}")


def _check_block(block_size: Any, fn: str, optional: bool = False) -> None:
    if optional and block_size is None:
        return
    if not matches(block_size, int) or block_size < 1:
        raise ValueError(f"{fn}: block_size must be an int >= 1, got {block_size!r}")


def _check_unit(value: Any, name: str, fn: str) -> None:
    if not matches(value, float) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{fn}: {name} must be a number in [0, 1], got {value!r}")


def _check_fill(fill: Any, fn: str) -> None:
    if not (fill == "mean" or matches(fill, float)):
        raise ValueError(f"{fn}: fill must be a number or 'mean', got {fill!r}")


# ---------------------------------------------------------------------------------- spatial
def _uniform(shape: Sequence[int], x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Uniform draws on the input's device (or on the generator's, then moved)."""
    device = generator.device if generator is not None else x.device
    return torch.rand(*shape, generator=generator, device=device).to(x.device)


def _apply_mask(x: Tensor, removed: Tensor, fill: Fill) -> Tensor:
    """Fill the pixels where ``removed`` (B, 1, H, W) is True with 0, a constant, or the image mean."""
    if fill == "mean":
        return torch.where(removed, x.mean(dim=(-2, -1), keepdim=True), x)
    return x.masked_fill(removed, fill)  # a number, not a tensor: no copy to the device


def _block_mask(blocks: Tensor, block_size: int, h: int, w: int) -> Tensor:
    """Expand a (B, 1, nH, nW) block mask to (B, 1, H, W), cropping the partial last blocks.
    (``repeat_interleave`` would read its output size back from a GPU: a sync.)"""
    b, _, nh, nw = blocks.shape
    full = blocks[:, :, :, None, :, None].expand(b, 1, nh, block_size, nw, block_size)
    return full.reshape(b, 1, nh * block_size, nw * block_size)[..., :h, :w]


def random_pixels(x: Tensor, p: float, fill: Fill = 0.0, generator: torch.Generator | None = None) -> Tensor:
    """Remove each pixel (all its channels) independently with probability ``p``.

    Args:
        x: image ``(B, C, H, W)``, floating point.
        p: probability in ``[0, 1]`` that a pixel is removed.
        fill: value written into removed pixels: a number, or ``"mean"`` for each image's mean colour.
        generator: optional ``torch.Generator``; the same seed gives the same mask.

    Raises:
        ValueError: bad shape, ``p`` outside ``[0, 1]``, bad ``fill``.
        TypeError: ``x`` is not a floating-point tensor.

    Example:
        >>> y = random_pixels(torch.rand(2, 3, 8, 8), p=0.5, generator=torch.Generator().manual_seed(0))
    """
    check_image(x, "random_pixels")
    _check_unit(p, "p", "random_pixels")
    _check_fill(fill, "random_pixels")
    b, _, h, w = x.shape
    return _apply_mask(x, _uniform((b, 1, h, w), x, generator) < p, fill)


def checkerboard(x: Tensor, block_size: int, fill: Fill = 0.0) -> Tensor:
    """Tile the image in ``b x b`` blocks and remove every other one (the top-left block is kept).

    Raises:
        ValueError: bad shape, ``block_size < 1``, bad ``fill``.
    """
    check_image(x, "checkerboard")
    _check_block(block_size, "checkerboard")
    _check_fill(fill, "checkerboard")
    h, w = x.shape[-2:]
    i = torch.arange(h, device=x.device) // block_size
    j = torch.arange(w, device=x.device) // block_size
    removed = ((i[:, None] + j[None, :]) % 2 == 1)[None, None]
    return _apply_mask(x, removed, fill)


def random_blocks(
    x: Tensor,
    block_size: int,
    threshold: float,
    fill: Fill = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Remove ``b x b`` blocks at random, each with probability ``threshold``.

    ``threshold`` is the expected fraction of blocks removed (ours: the paper does not define it); every image
    of the batch gets its own mask. Partial blocks at the right/bottom edge count as blocks.

    Raises:
        ValueError: bad shape, ``block_size < 1``, ``threshold`` outside ``[0, 1]``, bad ``fill``.
    """
    check_image(x, "random_blocks")
    _check_fill(fill, "random_blocks")
    return _apply_mask(x, random_block_mask(x, block_size, threshold, generator), fill)


def random_block_mask(x: Tensor, block_size: int, threshold: float,
                      generator: torch.Generator | None = None) -> Tensor:
    """The mask :func:`random_blocks` removes: ``(B, 1, H, W)`` bool, True where removed."""
    _check_block(block_size, "random_blocks")
    _check_unit(threshold, "threshold", "random_blocks")
    b, _, h, w = x.shape
    nh, nw = -(-h // block_size), -(-w // block_size)
    blocks = _uniform((b, 1, nh, nw), x, generator) < threshold
    return _block_mask(blocks, block_size, h, w)


# ---------------------------------------------------------------------------------- spectral
def _spectral(x: Tensor, block_size: int | None, keep: Callable[[Tensor], Tensor]) -> Tensor:
    """Keep the DCT coefficients whose normalised frequency satisfies ``keep``, per block."""
    h, w = x.shape[-2:]
    c = dct2(x, block_size)
    fh, fw = (block_size, block_size) if block_size else c.shape[-2:]
    mask = keep(block_frequency(fh, fw, x.device)).to(x.dtype)
    if block_size:
        nh, nw = c.shape[-2] // block_size, c.shape[-1] // block_size
        c = (c.unflatten(-1, (nw, block_size)).unflatten(-3, (nh, block_size)) * mask[:, None, :])
        c = c.flatten(-2).flatten(-3, -2)
    else:
        c = c * mask
    return idct2(c, block_size, size=(h, w))


def lowpass(x: Tensor, cutoff: float = 0.25, block_size: int | None = 32) -> Tensor:
    """Keep the frequencies ``f < cutoff`` of each block's DCT (``f`` in ``[0, 1]``).

    Args:
        x: image ``(B, C, H, W)``, floating point.
        cutoff: normalised frequency in ``[0, 1]``.
        block_size: DCT block size ``b`` (the paper's 32); ``None`` uses the whole image.

    Raises:
        ValueError: bad shape, ``cutoff`` outside ``[0, 1]``, ``block_size < 1``.

    Example:
        >>> x = torch.rand(1, 3, 32, 32)
        >>> torch.allclose(lowpass(x, 0.3, 8) + highpass(x, 0.3, 8), x, atol=1e-5)
        True
    """
    check_image(x, "lowpass")
    _check_unit(cutoff, "cutoff", "lowpass")
    _check_block(block_size, "lowpass", optional=True)
    return _spectral(x, block_size, lambda f: f < cutoff)


def highpass(x: Tensor, cutoff: float = 0.25, block_size: int | None = 32) -> Tensor:
    """Keep the frequencies ``f >= cutoff``: the exact complement of :func:`lowpass`."""
    check_image(x, "highpass")
    _check_unit(cutoff, "cutoff", "highpass")
    _check_block(block_size, "highpass", optional=True)
    return _spectral(x, block_size, lambda f: f >= cutoff)


def _check_band(band: Any, fn: str) -> tuple[float, float]:
    if not isinstance(band, (tuple, list)) or len(band) != 2:
        raise ValueError(f"{fn}: band must be a pair (lo, hi), got {band!r}")
    lo, hi = band
    _check_unit(lo, "band[0]", fn)
    _check_unit(hi, "band[1]", fn)
    if lo > hi:
        raise ValueError(f"{fn}: band must have lo <= hi, got band={tuple(band)}")
    return float(lo), float(hi)


def bandstop(x: Tensor, band: tuple[float, float] = (0.25, 0.5), block_size: int | None = 32) -> Tensor:
    """Remove the frequencies ``lo <= f < hi`` of each block's DCT.

    The default band, the middle of the spectrum, is ours: the paper finds that redacting the middle
    band helps depth most but does not give its edges.

    Raises:
        ValueError: bad shape, ``band`` not a pair in ``[0, 1]`` with ``lo <= hi``, ``block_size < 1``.
    """
    check_image(x, "bandstop")
    lo, hi = _check_band(band, "bandstop")
    _check_block(block_size, "bandstop", optional=True)
    return _spectral(x, block_size, lambda f: (f < lo) | (f >= hi))


# ---------------------------------------------------------------------------------- modules
class Redaction(nn.Module):
    """Base class: a redaction is a parameter-free module ``(B, C, H, W) -> (B, C, H, W)``."""

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_") and k != "training")


class RandomPixels(Redaction):
    """Module twin of :func:`random_pixels`.

    Example:
        >>> RandomPixels(p=0.5)(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 3, 16, 16])
    """

    def __init__(self, p: float = 0.5, fill: Fill = 0.0) -> None:
        super().__init__()
        _check_unit(p, "p", "RandomPixels")
        _check_fill(fill, "RandomPixels")
        self.p, self.fill = p, fill

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return random_pixels(x, self.p, self.fill, generator)


class Checkerboard(Redaction):
    """Module twin of :func:`checkerboard`."""

    def __init__(self, block_size: int = 8, fill: Fill = 0.0) -> None:
        super().__init__()
        _check_block(block_size, "Checkerboard")
        _check_fill(fill, "Checkerboard")
        self.block_size, self.fill = block_size, fill

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return checkerboard(x, self.block_size, self.fill)


class RandomBlocks(Redaction):
    """Module twin of :func:`random_blocks`. Paper's segmentation setting: ``b=32, threshold=0.4``."""

    def __init__(self, block_size: int = 32, threshold: float = 0.4, fill: Fill = 0.0) -> None:
        super().__init__()
        _check_block(block_size, "RandomBlocks")
        _check_unit(threshold, "threshold", "RandomBlocks")
        _check_fill(fill, "RandomBlocks")
        self.block_size, self.threshold, self.fill = block_size, threshold, fill

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return random_blocks(x, self.block_size, self.threshold, self.fill, generator)


class _CutoffRedaction(Redaction):
    """A spectral redaction with one cutoff: the module twin of ``function``."""

    function: Callable[[Tensor, float, int | None], Tensor]

    def __init__(self, block_size: int | None = 32, cutoff: float = 0.25) -> None:
        super().__init__()
        _check_block(block_size, type(self).__name__, optional=True)
        _check_unit(cutoff, "cutoff", type(self).__name__)
        self.block_size, self.cutoff = block_size, cutoff

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return type(self).function(x, self.cutoff, self.block_size)


class LowPass(_CutoffRedaction):
    """Module twin of :func:`lowpass`."""

    function = staticmethod(lowpass)


class HighPass(_CutoffRedaction):
    """Module twin of :func:`highpass`."""

    function = staticmethod(highpass)


class BandStop(Redaction):
    """Module twin of :func:`bandstop`. Paper's depth/normals setting: ``b=32``."""

    def __init__(self, block_size: int | None = 32, band: tuple[float, float] = (0.25, 0.5)) -> None:
        super().__init__()
        _check_block(block_size, "BandStop", optional=True)
        self.block_size, self.band = block_size, _check_band(band, "BandStop")

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return bandstop(x, self.band, self.block_size)


class Compose(Redaction):
    """Apply several redactions one after the other (e.g. band-stop, then random blocks)."""

    def __init__(self, redactions: Sequence[nn.Module | dict | str]) -> None:
        super().__init__()
        if not redactions:
            raise ValueError("Compose: redactions must not be empty")
        self.redactions = nn.ModuleList(as_redaction(r) for r in redactions)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        for r in self.redactions:
            x = r(x, generator=generator)
        return x


class RandomChoice(Redaction):
    """Apply one redaction per call, chosen at random with probabilities ``weights`` (uniform by default)."""

    def __init__(self, redactions: Sequence[nn.Module | dict | str], weights: Sequence[float] | None = None) -> None:
        super().__init__()
        if not redactions:
            raise ValueError("RandomChoice: redactions must not be empty")
        if weights is not None and (len(weights) != len(redactions) or min(weights) < 0 or sum(weights) <= 0):
            raise ValueError(f"RandomChoice: weights must be {len(redactions)} non-negative numbers, got {weights!r}")
        self.redactions = nn.ModuleList(as_redaction(r) for r in redactions)
        self.register_buffer("weights", torch.tensor(weights or [1.0] * len(redactions), dtype=torch.float64),
                             persistent=False)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        i = int(torch.multinomial(self.weights.cpu(), 1, generator=_cpu(generator)))
        return self.redactions[i](x, generator=generator)


def _cpu(generator: torch.Generator | None) -> torch.Generator | None:
    return generator if generator is None or generator.device.type == "cpu" else None


REGISTRY: dict[str, type[nn.Module]] = {
    "random_pixels": RandomPixels,
    "checkerboard": Checkerboard,
    "random_blocks": RandomBlocks,
    "lowpass": LowPass,
    "highpass": HighPass,
    "bandstop": BandStop,
    "compose": Compose,
    "random_choice": RandomChoice,
}


def build(name: str, **kwargs: Any) -> nn.Module:
    """Make a redaction from its registry name, for configs.

    Names: ``random_pixels``, ``checkerboard``, ``random_blocks``, ``lowpass``, ``highpass``,
    ``bandstop``, and ``compose`` / ``random_choice`` whose ``redactions`` are specs
    (``{"name": ..., **kwargs}``) or modules.

    Raises:
        ValueError: unknown name, or bad arguments for that redaction.

    Example:
        >>> r = build("random_choice", redactions=[{"name": "checkerboard", "block_size": 8},
        ...                                        {"name": "bandstop", "block_size": 32}])
        >>> r(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 3, 64, 64])
    """
    if name not in REGISTRY:
        raise ValueError(f"redaction.build: unknown redaction {name!r}; choose from {sorted(REGISTRY)}")
    try:
        return REGISTRY[name](**kwargs)
    except TypeError as e:
        raise ValueError(f"redaction.build: bad arguments for {name!r}: {e}") from None


def as_redaction(spec: nn.Module | dict | str) -> nn.Module:
    """A redaction from a module (returned as is), a registry name, or a spec ``{"name": ..., **kwargs}``.

    Example:
        >>> as_redaction({"name": "checkerboard", "block_size": 8}).block_size
        8
    """
    if isinstance(spec, nn.Module):
        return spec
    if isinstance(spec, str):
        return build(spec)
    if isinstance(spec, dict) and "name" in spec:
        return build(**spec)
    raise ValueError(f"redaction spec must be a module, a name or a dict with 'name', got {spec!r}")
