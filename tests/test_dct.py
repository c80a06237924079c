import numpy as np
import pytest
import scipy.fft
import torch

from dejavu.dct import dct2, dct_matrix, idct2


def scipy_block_dct(x: np.ndarray, b: int | None) -> np.ndarray:
    """Reference: numpy reflect padding, then scipy's orthonormal DCT-II of every tile."""
    if b is None:
        return scipy.fft.dctn(x, axes=(-2, -1), norm="ortho")
    h, w = x.shape[-2:]
    pad = [(0, 0)] * (x.ndim - 2) + [(0, -h % b), (0, -w % b)]
    x = np.pad(x, pad, mode="reflect")
    out = np.empty_like(x)
    for i in range(0, x.shape[-2], b):
        for j in range(0, x.shape[-1], b):
            out[..., i:i + b, j:j + b] = scipy.fft.dctn(x[..., i:i + b, j:j + b], axes=(-2, -1), norm="ortho")
    return out


SHAPES = [((2, 3, 32, 32), 8), ((1, 2, 40, 50), 16), ((1, 1, 7, 9), 4), ((2, 1, 5, 6), 16),
          ((1, 3, 33, 17), None), ((4, 12, 20), 5), ((64, 64), 32)]


@pytest.mark.parametrize("shape,b", SHAPES)
def test_matches_scipy_and_round_trips(shape, b):
    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    c = dct2(x, b)
    np.testing.assert_allclose(c.numpy(), scipy_block_dct(x.numpy(), b), atol=1e-10)
    np.testing.assert_allclose(idct2(c, b, size=shape[-2:]).numpy(), x.numpy(), atol=1e-10)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 2e-2), (torch.bfloat16, 1e-1)])
def test_low_precision_dtypes(dtype, tol):
    x = torch.rand(2, 3, 32, 48)
    c = dct2(x.to(dtype), 16)
    assert c.dtype == dtype
    torch.testing.assert_close(c.float(), dct2(x, 16), atol=tol, rtol=tol)
    torch.testing.assert_close(idct2(c, 16).float(), x, atol=tol, rtol=tol)


def test_differentiable():
    x = torch.randn(1, 1, 12, 10, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: dct2(t, 4), (x,))
    assert torch.autograd.gradcheck(lambda t: idct2(dct2(t)), (x,))


def test_basis_is_cached_and_orthonormal():
    assert dct_matrix(8, torch.device("cpu"), torch.float32) is dct_matrix(8, torch.device("cpu"), torch.float32)
    d = dct_matrix(8, "cpu", torch.float64)
    torch.testing.assert_close(d @ d.T, torch.eye(8, dtype=torch.float64))


def test_bad_input():
    with pytest.raises(ValueError, match="block_size"):
        dct2(torch.rand(1, 8, 8), 0)
    with pytest.raises(TypeError, match="floating"):
        dct2(torch.ones(8, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="at least 2"):
        dct2(torch.rand(8))
    with pytest.raises(ValueError, match="multiples"):
        idct2(torch.rand(1, 10, 8), 8)
