import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from dejavu import DejaVuLoss
from dejavu.conditioning import hard_probabilities
from dejavu.losses import PRESETS
from dejavu.perceptual import LPIPS, structural_similarity
from dejavu.tasks import Depth, MultiTask, Normals, Segmentation

# a CRM whose projection is not zero: a fresh CRM regenerates the redacted image exactly and sends no
# gradient (by design, test_regeneration.py); these tests are about what happens once it has moved
MOVED = {"init_scale": 0.02}


def small_net(classes: int = 5) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, classes, 1))


def test_gradients_reach_prediction_not_image():
    loss_fn = DejaVuLoss(5, "random_blocks", "forward", lpips_weights="random", regenerator_kwargs=MOVED)
    image = torch.rand(2, 3, 32, 32, requires_grad=True)
    pred = torch.randn(2, 5, 32, 32, requires_grad=True)
    loss_fn(image, pred).loss.backward()
    assert image.grad is None
    assert pred.grad is not None and pred.grad.abs().sum() > 0


def test_recursive_returns_every_step_and_averages_them():
    loss_fn = DejaVuLoss(5, "checkerboard", "recursive", regenerator_kwargs={"steps": 4}, lpips_weight=0,
                         scale=1.0)
    image, pred = torch.rand(2, 3, 32, 32), torch.randn(2, 5, 32, 32)
    out = loss_fn(image, pred, generator=torch.Generator().manual_seed(0))
    assert out.steps.shape == (4, 2, 3, 32, 32) and torch.equal(out.regenerated, out.steps[-1])
    per_step = torch.stack([((s - image) ** 2).mean() for s in out.steps]).mean()
    torch.testing.assert_close(out.loss, per_step)


def test_low_resolution_prediction_is_resized():
    loss_fn = DejaVuLoss(5, "random_pixels", "forward", lpips_weight=0, scale=1.0)
    out = loss_fn(torch.rand(2, 3, 64, 48), torch.randn(2, 5, 16, 12))
    assert out.regenerated.shape == (2, 3, 64, 48)
    smaller = DejaVuLoss(5, "random_pixels", "forward", lpips_weight=0)  # default: a quarter of the image's side
    assert smaller(torch.rand(2, 3, 64, 48), torch.randn(2, 5, 32, 24)).regenerated.shape == (2, 3, 16, 12)


def test_normalised_image_is_mapped_back_to_unit_range():
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    loss_fn = DejaVuLoss(5, "checkerboard", "forward", lpips_weight=0, mean=mean, std=std)
    x01 = torch.rand(1, 3, 16, 16)
    normed = (x01 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(loss_fn.to_unit_range(normed), x01)
    loss255 = DejaVuLoss(5, "checkerboard", "forward", lpips_weight=0, value_range=(0, 255))
    torch.testing.assert_close(loss255.to_unit_range(x01 * 255), x01)


def test_lpips_weights_come_from_torchvision(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache, url = tmp_path / "hub" / "checkpoints", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
    # offline (DEJAVU_OFFLINE=1 in the tests, or offline=True) with nothing cached: the named error
    named = rf"alexnet-owt-7be5be79\.pth, which is not in the cache {cache}, and downloads are off.*connect"
    for kw in ({}, {"offline": True}):
        with pytest.raises(FileNotFoundError, match=named + r".*lpips_weights=PATH.*lpips_weight=0"):
            DejaVuLoss(5, **kw)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DejaVuLoss(5, lpips_weights=tmp_path / "missing.pth")
    # online: torchvision's own loader fetches the file into the torch hub cache
    alex = torchvision.models.alexnet()
    fetched = []

    def download(source, destination, *args, **kwargs):
        fetched.append(source)
        torch.save(alex.state_dict(), destination)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    loss_fn = DejaVuLoss(5, offline=False)
    assert fetched == [url] and (cache / "alexnet-owt-7be5be79.pth").is_file()
    torch.testing.assert_close(loss_fn.lpips.model.net.slice1[0].weight, alex.features[0].weight)
    # cached: read from the cache, even offline, with no download
    for loss_fn in (DejaVuLoss(5), DejaVuLoss(5, offline=False)):
        torch.testing.assert_close(loss_fn.lpips.model.net.slice1[0].weight, alex.features[0].weight)
    assert len(fetched) == 1
    # a local path wins over the cache
    other = torchvision.models.alexnet()
    torch.save(other.state_dict(), tmp_path / "mine.pth")
    loss_fn = DejaVuLoss(5, lpips_weights=tmp_path / "mine.pth")
    torch.testing.assert_close(loss_fn.lpips.model.net.slice1[0].weight, other.features[0].weight)
    bad = tmp_path / "bad.pth"
    torch.save({"x": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not a torchvision alex"):
        LPIPS("alex", bad)


def test_a_failed_lpips_download_is_named(tmp_path, monkeypatch):
    from urllib.error import URLError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def unreachable(*args, **kwargs):
        raise URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", unreachable)
    with pytest.raises(FileNotFoundError, match=r"vgg16-397923af\.pth.*the download failed \(.*Name or service"):
        DejaVuLoss(5, lpips_net="vgg", offline=False)


def test_lpips_is_zero_for_identical_images_and_kept_out_of_checkpoints():
    loss_fn = DejaVuLoss(5, lpips_weights="random")
    x = torch.rand(2, 3, 32, 32)
    assert loss_fn.lpips(x, x).abs().max() < 1e-6
    assert loss_fn.lpips(x, torch.rand(2, 3, 32, 32)).min() > 0
    lin = torch.cat([p.flatten() for n, p in loss_fn.lpips.named_parameters() if ".lin" in n])
    assert lin.min() >= 0 and lin.max() > 0  # the calibrated linear layers that ship with lpips were loaded
    assert not any(k.startswith("lpips") for k in loss_fn.state_dict())
    DejaVuLoss(5, lpips_weights="random").load_state_dict(loss_fn.state_dict())  # strict load works
    loss_fn.train()
    assert not loss_fn.lpips.training


def test_lpips_one_pass_equals_the_package():
    """Both images through the backbone in one batch computes exactly lpips.LPIPS's distance."""
    lp = LPIPS("alex", "random")
    x, y = torch.rand(3, 3, 48, 40, requires_grad=True), torch.rand(3, 3, 48, 40)
    ours = lp(x, y)
    torch.testing.assert_close(ours, lp.model(x, y, normalize=True).flatten())
    (gx,) = torch.autograd.grad(ours.sum(), x)
    (gref,) = torch.autograd.grad(lp.model(x, y, normalize=True).sum(), x)
    torch.testing.assert_close(gx, gref)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets(name):
    extra = {"adapter": "softmax"} if name == "nyud" else {}
    loss_fn = DejaVuLoss.from_preset(name, pred_channels=4, lpips_weights="random", **extra)
    for key in ("gamma", "mse_weight", "lpips_weight"):
        assert getattr(loss_fn, key) == PRESETS[name][key]
    pred = torch.rand(1, 4, 64, 64) + 0.1
    assert torch.isfinite(loss_fn(torch.rand(1, 3, 64, 64), pred).loss)


def test_nyud_preset_conditions_on_the_tasks_maps():
    """The NYUD-v2 setting covers several tasks: it takes the task's condition, never raw outputs."""
    with pytest.raises(ValueError, match=r"adapter=task\.condition"):
        DejaVuLoss.from_preset("nyud", pred_channels=10, lpips_weight=0)
    task = MultiTask([Segmentation(6), Depth(), Normals()])
    loss_fn = DejaVuLoss.from_preset("nyud", task.channels, adapter=task.condition, lpips_weight=0, scale=1.0)
    raw = torch.randn(2, task.channels, 16, 16) * 5
    cond = loss_fn.condition(torch.rand(2, 3, 16, 16), raw)
    torch.testing.assert_close(cond[:, :6].sum(1), torch.ones(2, 16, 16))  # probabilities
    assert cond[:, 6].min() >= 0 and cond[:, 6].max() <= 1  # depth normalised per image
    torch.testing.assert_close(cond[:, 7:].norm(dim=1), torch.ones(2, 16, 16))  # unit normals


def test_hard_condition_is_one_hot_with_the_softmax_gradient():
    """Straight-through: the CRM sees the arg-max labels, the network gets the softmax's gradient."""
    logits = torch.randn(2, 5, 8, 8, requires_grad=True)
    hard = Segmentation(5, hard_condition=True).condition(logits)
    torch.testing.assert_close(hard, F.one_hot(logits.argmax(1), 5).permute(0, 3, 1, 2).float())
    weights = torch.randn(2, 5, 8, 8)
    (g_hard,) = torch.autograd.grad((hard * weights).sum(), logits)
    (g_soft,) = torch.autograd.grad((Segmentation(5).condition(logits) * weights).sum(), logits)
    torch.testing.assert_close(g_hard, g_soft)
    assert DejaVuLoss(5, lpips_weight=0, adapter="hard_softmax").adapter is hard_probabilities


def test_zero_inference_cost():
    """Training with DejaVuLoss leaves the model's own state_dict keys and forward pass unchanged."""
    model = small_net()
    keys, probe = list(model.state_dict()), torch.rand(1, 3, 32, 32)
    loss_fn = DejaVuLoss(5, "random_blocks", "forward", lpips_weights="random")
    opt = torch.optim.SGD([*model.parameters(), *loss_fn.parameters()], lr=0.1)
    for _ in range(3):
        image = torch.rand(4, 3, 32, 32)
        loss = loss_fn(image, model(image)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert list(model.state_dict()) == keys
    fresh = small_net()
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(fresh(probe), model(probe))


def test_autocast_bfloat16_on_cpu():
    loss_fn = DejaVuLoss(5, "bandstop", "recursive", regenerator_kwargs={"steps": 2}, lpips_weights="random")
    model = small_net()
    image = torch.rand(2, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = loss_fn(image, model(image))
    out.loss.backward()
    assert torch.isfinite(out.loss) and model[0].weight.grad is not None


@pytest.mark.parametrize("image,pred,err,match", [
    (torch.rand(3, 32, 32), torch.rand(1, 5, 32, 32), ValueError, "image must have shape"),
    (torch.rand(1, 3, 32, 32), torch.rand(5, 32, 32), ValueError, "prediction must have shape"),
    (torch.rand(2, 3, 32, 32), torch.rand(1, 5, 32, 32), ValueError, "batch mismatch"),
    (torch.rand(1, 3, 32, 32), torch.rand(1, 4, 32, 32), ValueError, "pred_channels=5"),
    (torch.rand(1, 1, 32, 32), torch.rand(1, 5, 32, 32), ValueError, "3 channels"),
    (torch.rand(1, 3, 32, 32), torch.full((1, 5, 32, 32), float("nan")), ValueError, "NaN"),
    (torch.rand(1, 3, 32, 32), torch.ones(1, 5, 32, 32, dtype=torch.long), TypeError, "floating"),
    (torch.full((1, 3, 32, 32), float("inf")), torch.rand(1, 5, 32, 32), ValueError, "image contains NaN or Inf"),
    (torch.rand(1, 3, 32, 32) * 255, torch.rand(1, 5, 32, 32), ValueError, r"spans \[.*value_range=\(0, 255\)"),
    (torch.rand(0, 3, 32, 32), torch.rand(0, 5, 32, 32), ValueError, "empty batch"),
])
def test_bad_input(image, pred, err, match):
    with pytest.raises(err, match=match):
        DejaVuLoss(5, lpips_weight=0)(image, pred)


@pytest.mark.parametrize("kwargs,match", [
    ({"pred_channels": 0}, "pred_channels"),
    ({"gamma": -1}, "gamma"),
    ({"gamma": float("nan")}, "gamma must be a finite number"),
    ({"mse_weight": float("inf")}, "mse_weight must be a finite number"),
    ({"adapter": "tanh"}, "adapter"),
    ({"mean": [0.5] * 3}, "both mean and std"),
    ({"value_range": (1, 0)}, "value_range"),
    ({"regenerator": "gan"}, "unknown CRM"),
    ({"redaction": "blur"}, "unknown redaction"),
])
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DejaVuLoss(**{"pred_channels": 5, "lpips_weight": 0, **kwargs})


def test_image_range_follows_value_range_and_normalisation():
    pred = torch.rand(1, 5, 32, 32)
    eight_bit = DejaVuLoss(5, lpips_weight=0, value_range=(0, 255))
    assert torch.isfinite(eight_bit(torch.rand(1, 3, 32, 32) * 255, pred).loss)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    normalised = (torch.rand(1, 3, 32, 32) - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.isfinite(DejaVuLoss(5, lpips_weight=0, mean=mean, std=std)(normalised, pred).loss)
    with pytest.raises(ValueError, match="mean/std the image was normalised with"):
        DejaVuLoss(5, lpips_weight=0)(normalised, pred)  # normalised, but the loss was not told


def test_state_is_copyable():
    loss_fn = DejaVuLoss(5, lpips_weights="random")
    assert copy.deepcopy(loss_fn).lpips is not None


def test_reduced_resolution_regeneration():
    loss_fn = DejaVuLoss(5, "checkerboard", "forward", lpips_weight=0, scale=0.5, regenerator_kwargs=MOVED)
    image, pred = torch.rand(2, 3, 64, 48), torch.randn(2, 5, 64, 48, requires_grad=True)
    out = loss_fn(image, pred)
    assert out.regenerated.shape == out.redacted.shape == (2, 3, 32, 24)
    out.loss.backward()
    assert pred.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="scale"):
        DejaVuLoss(5, lpips_weight=0, scale=0)


def test_lpips_on_the_last_step_only():
    kw = dict(regenerator="recursive", regenerator_kwargs={"steps": 3, **MOVED}, lpips_weights="random", mse_weight=0.0,
              scale=1.0)
    torch.manual_seed(0)
    every = DejaVuLoss(5, "checkerboard", lpips_steps="all", **kw)
    torch.manual_seed(0)
    last = DejaVuLoss(5, "checkerboard", lpips_steps="last", **kw)
    image, pred = torch.rand(2, 3, 32, 32), torch.randn(2, 5, 32, 32)
    out_every, out_last = every(image, pred), last(image, pred)
    expected = every.lpips(out_last.steps[-1], every.to_unit_range(image)).mean()
    torch.testing.assert_close(out_last.lpips, expected)
    assert not torch.allclose(out_every.lpips, out_last.lpips)


@pytest.mark.parametrize("redaction", ["random_blocks", "bandstop"])
def test_torch_compile(redaction):
    """Dynamo captures the loss and AOT autograd differentiates it; results match eager mode."""
    torch.manual_seed(0)
    loss_fn = DejaVuLoss(5, redaction, "recursive", regenerator_kwargs={"steps": 2, **MOVED}, lpips_weight=0)
    compiled = torch.compile(loss_fn, backend="aot_eager")
    image, pred = torch.rand(2, 3, 32, 32), torch.randn(2, 5, 32, 32, requires_grad=True)
    eager = loss_fn(image, pred, generator=torch.Generator().manual_seed(1)).loss
    out = compiled(image, pred, generator=torch.Generator().manual_seed(1)).loss
    torch.testing.assert_close(out, eager)
    (grad,) = torch.autograd.grad(out, pred)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_reliance_of_a_fresh_crm_is_near_zero_and_masks_are_shared():
    loss_fn = DejaVuLoss(5, "random_blocks", "forward", lpips_weight=0)
    image, pred = torch.rand(4, 3, 64, 64), torch.randn(4, 5, 64, 64)
    r = loss_fn.reliance(image, pred, target_condition=torch.rand(4, 5, 16, 16),
                         generator=torch.Generator().manual_seed(0))
    assert set(r) == {"regen_mse", "regen_mse_blank", "regen_mse_gt", "reliance"}
    assert abs(r["reliance"]) < 0.05  # a CRM that has learnt nothing regenerates alike from any condition
    again = loss_fn.reliance(image, pred, generator=torch.Generator().manual_seed(0))
    assert again["regen_mse"] == r["regen_mse"]  # reproducible from the generator
    with pytest.raises(ValueError, match="target_condition"):
        loss_fn.reliance(image, pred, target_condition=torch.rand(4, 3, 16, 16))


def test_redaction_is_at_image_resolution_at_every_scale():
    """Block sizes count image pixels: a 16-pixel checkerboard at scale 0.25 is a 4-pixel one."""
    image = torch.rand(1, 3, 64, 64) + 0.1
    for scale in (1.0, 0.5, 0.25):
        loss_fn = DejaVuLoss(5, {"name": "checkerboard", "block_size": 16}, "forward", lpips_weight=0, scale=scale)
        out = loss_fn(image, torch.randn(1, 5, 64, 64))
        side = round(64 * scale)
        assert out.redacted.shape[-2:] == (side, side)
        removed = (out.redacted[0, 0] == 0).float()
        assert removed.mean() == 0.5 and removed[: side // 4, : side // 4].std() == 0  # whole blocks


def test_a_band_erased_by_downsampling_is_flagged():
    """Band-stop of 8-pixel blocks removes periods of 3-7 pixels: at scale 0.25 (periods under 8 pixels
    vanish) the CRM would see no redaction at all, so the loss warns; at 0.5 it does not."""
    with pytest.warns(UserWarning, match=r"scale >= 0\.31"):
        DejaVuLoss(5, {"name": "bandstop", "block_size": 8}, lpips_weight=0, scale=0.25)
    image, erased = torch.rand(2, 3, 64, 64), {}
    for scale in (0.25, 1.0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loss_fn = DejaVuLoss(5, {"name": "bandstop", "block_size": 8}, lpips_weight=0, scale=scale)
        target, redacted, _ = loss_fn.regenerate(image, torch.rand(2, 5, *loss_fn._size(image)))
        erased[scale] = F.mse_loss(redacted, target)
    assert erased[0.25] < 0.05 * erased[1.0], erased  # what is left to regenerate at 0.25 is almost nothing
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DejaVuLoss(5, {"name": "bandstop", "block_size": 8}, lpips_weight=0, scale=0.5)
        DejaVuLoss(5, "random_blocks", lpips_weight=0)


def test_the_ssim_term_is_one_minus_ssim_of_the_last_step_and_trains_the_prediction():
    torch.manual_seed(0)
    image, pred = torch.rand(2, 3, 64, 64), torch.randn(2, 4, 64, 64, requires_grad=True)
    plain = DejaVuLoss(4, "checkerboard", "recursive", regenerator_kwargs={"steps": 3, **MOVED}, lpips_weight=0)
    both = DejaVuLoss(4, "checkerboard", "recursive", regenerator_kwargs={"steps": 3, **MOVED}, lpips_weight=0,
                      ssim_weight=0.5)
    both.load_state_dict(plain.state_dict())
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    a, b = plain(image, pred, generator=g()), both(image, pred, generator=g())
    target = plain.regenerate(image, plain.condition(image, pred), g())[0]
    ssim = structural_similarity(b.regenerated, target)
    assert float(b.ssim) == pytest.approx(float(ssim)) and 0 < float(ssim) < 1
    assert float(b.loss) == pytest.approx(float(a.loss) + 0.5 * (1 - float(ssim)), rel=1e-5)
    b.loss.backward()
    assert pred.grad.abs().sum() > 0
    assert float(structural_similarity(target, target)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="ssim_weight"):
        DejaVuLoss(4, ssim_weight=-1, lpips_weight=0)


def test_from_condition_is_forward_given_the_predictions_condition():
    image, pred = torch.rand(2, 3, 32, 32), torch.randn(2, 4, 32, 32)
    loss = DejaVuLoss(4, "random_blocks", "forward", lpips_weight=0)
    a = loss(image, pred, generator=torch.Generator().manual_seed(0))
    b = loss.from_condition(image, loss.condition(image, pred), generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.loss, b.loss)
