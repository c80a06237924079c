import pytest
import torch

from dejavu import redaction as R
from dejavu.dct import block_frequency, dct2


def img(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("b", [None, 8, 32])
@pytest.mark.parametrize("cutoff", [0.0, 0.3, 0.7, 1.0])
def test_lowpass_plus_highpass_is_identity(b, cutoff):
    x = img(2, 3, 40, 52)
    torch.testing.assert_close(R.lowpass(x, cutoff, b) + R.highpass(x, cutoff, b), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("b", [None, 8, 32])
def test_bandstop_over_empty_band_is_identity(b):
    x = img(2, 3, 40, 52)
    torch.testing.assert_close(R.bandstop(x, (0.4, 0.4), b), x, atol=1e-5, rtol=0)


def test_bandstop_zeroes_exactly_the_band():
    x = img(1, 3, 64, 64)
    c = dct2(R.BandStop(16, band=(0.2, 0.6))(x), 16).unflatten(-1, (4, 16)).unflatten(-3, (4, 16))
    f = block_frequency(16, 16)
    inside = ((f >= 0.2) & (f < 0.6))[:, None, :].expand(16, 4, 16)
    assert c[..., inside].abs().max() < 1e-5
    assert c[..., ~inside].abs().max() > 1e-2


def test_lowpass_removes_detail():
    x = img(1, 3, 64, 64)
    y = R.LowPass(32, cutoff=0.1)(x)
    # a low-passed block is smooth: neighbouring pixels differ far less than in noise
    assert (y.diff(dim=-1).abs().mean() < 0.3 * x.diff(dim=-1).abs().mean())


@pytest.mark.parametrize("t", [0.0, 0.1, 0.4, 0.8, 1.0])
def test_random_blocks_fraction_tracks_threshold(t):
    x = img(8, 3, 256, 256) + 0.1  # strictly positive, so a zero means removed
    y = R.RandomBlocks(8, threshold=t)(x, generator=torch.Generator().manual_seed(1))
    blocks = (y[:, :1] == 0).unflatten(-1, (32, 8)).unflatten(-3, (32, 8))
    whole = blocks.all(dim=-1).all(dim=-2)
    assert torch.equal(whole, blocks.any(dim=-1).any(dim=-2))  # a block goes whole or not at all
    assert abs(whole.float().mean().item() - t) < 0.02  # 8192 blocks: 3 sigma < 0.017


def test_random_pixels_fraction_and_channels():
    x = img(4, 3, 128, 128) + 0.1
    y = R.random_pixels(x, 0.3, generator=torch.Generator().manual_seed(0))
    removed = y == 0
    assert torch.equal(removed[:, 0], removed[:, 2])  # a pixel is removed in all channels
    assert abs(removed.float().mean().item() - 0.3) < 0.01


def test_checkerboard_pattern():
    x = img(1, 1, 8, 12) + 0.1
    y = R.Checkerboard(4)(x)[0, 0]
    expected = torch.tensor([[0, 1, 0], [1, 0, 1]], dtype=torch.bool)
    assert torch.equal((y == 0)[::4, ::4], expected)
    assert (y == 0).float().mean() == 0.5


def test_same_seed_same_mask_and_seeds_differ():
    x = img(2, 3, 64, 64)
    for r in (R.RandomBlocks(8, 0.5), R.RandomPixels(0.5)):
        a = r(x, generator=torch.Generator().manual_seed(7))
        b = r(x, generator=torch.Generator().manual_seed(7))
        c = r(x, generator=torch.Generator().manual_seed(8))
        assert torch.equal(a, b) and not torch.equal(a, c)
    # every image of a batch gets its own mask
    y = R.random_blocks(x, 8, 0.5, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(y[0] == 0, y[1] == 0)


def test_mean_fill():
    x = img(2, 3, 32, 32)
    y = R.random_blocks(x, 8, 1.0, fill="mean")
    torch.testing.assert_close(y, x.mean(dim=(-2, -1), keepdim=True).expand_as(x))


def test_shape_dtype_device_follow_input():
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        x = img(1, 3, 20, 30).to(dtype)
        for r in (R.BandStop(8), R.LowPass(None, 0.5), R.RandomBlocks(8, 0.5), R.Checkerboard(4), R.RandomPixels(0.5)):
            y = r(x)
            assert y.shape == x.shape and y.dtype == dtype


def test_build_compose_and_random_choice():
    assert isinstance(R.build("random_blocks", block_size=16, threshold=0.2), R.RandomBlocks)
    for name in ("random_pixels", "checkerboard", "random_blocks", "lowpass", "highpass", "bandstop"):
        assert R.build(name)(img(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    x = img(1, 3, 32, 32) + 0.1
    both = R.build("compose", redactions=[{"name": "bandstop", "block_size": 8}, "checkerboard"])
    assert (both(x) == 0).float().mean() == 0.5
    choice = R.build("random_choice", redactions=[R.Checkerboard(8), R.RandomBlocks(8, 1.0)], weights=[0.0, 1.0])
    assert (choice(x) == 0).all()
    g = torch.Generator().manual_seed(0)
    choice = R.RandomChoice([R.Checkerboard(8), R.RandomBlocks(8, 1.0)])
    picks = {float((choice(x, generator=g) == 0).float().mean()) for _ in range(30)}
    assert picks == {0.5, 1.0}


@pytest.mark.parametrize("call,match", [
    (lambda: R.RandomBlocks(0, 0.5), "block_size"),
    (lambda: R.RandomBlocks(8, 1.5), "threshold"),
    (lambda: R.RandomPixels(-0.1), "p must"),
    (lambda: R.BandStop(8, band=(0.6, 0.2)), "lo <= hi"),
    (lambda: R.LowPass(8, cutoff=2), "cutoff"),
    (lambda: R.build("nope"), "unknown redaction"),
    (lambda: R.build("checkerboard", size=3), "bad arguments"),
    (lambda: R.checkerboard(torch.rand(3, 8, 8), 4), r"\(B, C, H, W\)"),
    (lambda: R.random_pixels(torch.rand(1, 3, 8, 8), 0.5, fill="blue"), "fill"),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
