"""Orthonormal 2-D DCT-II of whole images or of ``b x b`` blocks, as batched matrix products.

The block transform never permutes memory: with ``x`` viewed as ``(..., H/b, b, W)`` the row
transform is one batched ``D @ x``; with ``x`` viewed as ``(..., H, W/b, b)`` the column transform is
one ``x @ D.T``. Sides that are not a multiple of ``b`` are reflect-padded first; the coefficients
are then laid out tile by tile over the padded image, and :func:`idct2` crops back with ``size``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

__all__ = ["dct2", "idct2", "dct_matrix", "block_frequency", "reflect_pad"]


@lru_cache(maxsize=64)
def dct_matrix(n: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
    """Orthonormal DCT-II matrix ``D`` of size ``(n, n)``: ``D @ x`` transforms a column ``x``.

    Built once in float64 per ``(n, device, dtype)`` and cached, so repeated calls cost nothing.

    Example:
        >>> D = dct_matrix(4)
        >>> torch.allclose(D @ D.T, torch.eye(4), atol=1e-6)
        True
    """
    if n < 1:
        raise ValueError(f"dct_matrix: n must be >= 1, got {n}")
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    i = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.to(device=device, dtype=dtype)


def _check(x: Tensor, block_size: int | None, fn: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}: x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"{fn}: x must have at least 2 dimensions (..., H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{fn}: x must be a floating-point tensor, got dtype {x.dtype}")
    if block_size is not None and (not isinstance(block_size, int) or block_size < 1):
        raise ValueError(f"{fn}: block_size must be a positive int or None, got {block_size!r}")


def _reflect_index(n: int, m: int, device: torch.device) -> Tensor:
    """Indices into a side of length ``n`` that reflect-extend it to length ``m`` (numpy 'reflect')."""
    idx = torch.arange(m, device=device)
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    idx = idx % period
    return torch.where(idx < n, idx, period - idx)


def reflect_pad(x: Tensor, block_size: int) -> Tensor:
    """Reflect-pad the last two dims of ``x`` at the bottom/right up to multiples of ``block_size``.

    Unlike ``F.pad(mode="reflect")`` this accepts pads longer than the side (it reflects again), and
    works for any number of leading dimensions.
    """
    h, w = x.shape[-2:]
    ph, pw = -h % block_size, -w % block_size
    if ph:
        x = x.index_select(-2, _reflect_index(h, h + ph, x.device))
    if pw:
        x = x.index_select(-1, _reflect_index(w, w + pw, x.device))
    return x


def _separable(x: Tensor, dh: Tensor, dw: Tensor, block_size: int | None) -> Tensor:
    """``Dh @ X @ Dw.T`` on the whole image, or on every ``b x b`` tile of it."""
    h, w = x.shape[-2:]
    if block_size is None:
        return dh @ x @ dw.T
    b = block_size
    lead = x.shape[:-2]
    y = (dh @ x.reshape(*lead, h // b, b, w)).reshape(*lead, h, w)
    return (y.reshape(*lead, h, w // b, b) @ dw.T).reshape(*lead, h, w)


def dct2(x: Tensor, block_size: int | None = None) -> Tensor:
    """Orthonormal 2-D DCT-II over the last two dimensions.

    Args:
        x: tensor of shape ``(..., H, W)``, floating point (float16/bfloat16/float32/float64).
        block_size: transform each ``b x b`` tile independently (sides are reflect-padded to a
            multiple of ``b``); ``None`` transforms the whole image.

    Returns:
        Coefficients of shape ``(..., H', W')`` where ``H', W'`` are the padded sides (equal to
        ``H, W`` when ``block_size`` is ``None`` or divides them). Tile ``(i, j)`` holds the
        coefficients of image tile ``(i, j)``, DC at its top-left.

    Raises:
        TypeError: ``x`` is not a floating-point tensor.
        ValueError: ``x`` has fewer than 2 dimensions, or ``block_size < 1``.

    Example:
        >>> x = torch.rand(2, 3, 40, 50)
        >>> c = dct2(x, block_size=16)
        >>> c.shape
        torch.Size([2, 3, 48, 64])
        >>> torch.allclose(idct2(c, block_size=16, size=(40, 50)), x, atol=1e-5)
        True
    """
    _check(x, block_size, "dct2")
    if block_size is not None:
        x = reflect_pad(x, block_size)
    h, w = x.shape[-2:]
    dh = dct_matrix(block_size or h, x.device, x.dtype)
    dw = dh if block_size else dct_matrix(w, x.device, x.dtype)
    return _separable(x, dh, dw, block_size)


def idct2(c: Tensor, block_size: int | None = None, size: tuple[int, int] | None = None) -> Tensor:
    """Inverse of :func:`dct2`.

    Args:
        c: coefficients of shape ``(..., H', W')`` as returned by :func:`dct2`.
        block_size: the block size given to :func:`dct2`; ``H'`` and ``W'`` must be multiples of it.
        size: ``(H, W)`` to crop the result to (the image size before padding); default no crop.

    Raises:
        TypeError: ``c`` is not a floating-point tensor.
        ValueError: bad ``block_size``, sides not multiples of it, or ``size`` larger than ``c``.
    """
    _check(c, block_size, "idct2")
    h, w = c.shape[-2:]
    if block_size is not None and (h % block_size or w % block_size):
        raise ValueError(f"idct2: coefficient sides {(h, w)} are not multiples of block_size={block_size}")
    dh = dct_matrix(block_size or h, c.device, c.dtype)
    dw = dh if block_size else dct_matrix(w, c.device, c.dtype)
    x = _separable(c, dh.T, dw.T, block_size)
    if size is not None:
        if size[0] > h or size[1] > w:
            raise ValueError(f"idct2: size={tuple(size)} is larger than the coefficients' {(h, w)}")
        x = x[..., : size[0], : size[1]]
    return x


@lru_cache(maxsize=64)
def block_frequency(h: int, w: int, device: torch.device | str = "cpu") -> Tensor:
    """Normalised radial frequency ``f`` in ``[0, 1]`` of each coefficient of an ``h x w`` DCT.

    ``f(u, v) = sqrt((u / (h - 1))**2 + (v / (w - 1))**2) / sqrt(2)``, which for a square ``b x b``
    block is ``sqrt(u**2 + v**2) / (sqrt(2) * (b - 1))`` (ours: the paper does not define it).
    """
    u = torch.arange(h, dtype=torch.float64) / max(h - 1, 1)
    v = torch.arange(w, dtype=torch.float64) / max(w - 1, 1)
    f = torch.sqrt(u[:, None] ** 2 + v[None, :] ** 2) / math.sqrt(2.0)
    return f.to(device)
