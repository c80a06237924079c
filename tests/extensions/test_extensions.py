import copy
import math

import pytest
import torch
from helpers import ROOT
from torch import nn

from dejavu import DejaVuLoss, DejaVuOutput
from dejavu.extensions import TrainingStep
from dejavu.extensions.cyclic import CyclicConsistency, cyclic_consistency
from dejavu.extensions.text import TINY_CLIP, TextSupervision
from dejavu.models import create_model, load_weights, model_cost
from dejavu.models.shared_attention import SharedAttention
from dejavu.tasks import Denoising, MaskedModeling, Segmentation
from dejavu.training import DenseDataModule, label_subset


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))


def test_cyclic_loss_is_zero_when_the_regenerated_image_is_the_input():
    h, x = net(), torch.rand(2, 3, 16, 16)
    cond = Segmentation(4).condition
    assert cyclic_consistency(h, x, h(x), cond) == 0
    other = torch.rand(2, 3, 16, 16, requires_grad=True)
    out = DejaVuOutput(torch.zeros(()), x, other, [other], torch.zeros(()), torch.zeros(()))
    step = TrainingStep(h, x, h(x), cond, DejaVuLoss(4, lpips_weight=0), out)
    (loss,) = CyclicConsistency(0.1)(step).values()
    loss.backward()
    assert loss > 0 and other.grad.abs().sum() > 0 and h[0].weight.grad.abs().sum() > 0


def test_text_supervision_with_a_tiny_random_clip():
    names = ["background", "floor", "wall", "sphere", "box", "cylinder"]
    ts = TextSupervision(TINY_CLIP, class_names=names, random_init=True)
    assert ts.text.shape == (6, 32)
    x = torch.rand(2, 3, 48, 48)
    assert ts.distance(x, x) == 0
    y = torch.rand(2, 3, 48, 48, requires_grad=True)
    loss = ts.distance(y, x)
    loss.backward()
    assert loss > 0 and y.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in ts.clip.parameters())
    assert not any(k.startswith("clip.") for k in ts.state_dict())
    plain = TextSupervision(TINY_CLIP, random_init=True)  # no class names: compares embeddings
    assert plain.features(x).shape == (2, 32)


def test_text_supervision_weights_come_from_open_clip(tmp_path, monkeypatch):
    import open_clip

    # offline with nothing cached: the named error (no network is touched)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match=r"CLIP 'ViT-B-32'.*'openai' weights.*hub.*checkpoint=PATH"):
        TextSupervision("ViT-B-32", offline=True)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TextSupervision(TINY_CLIP, checkpoint=tmp_path / "nope.pt")
    with pytest.raises(ValueError, match="random_init=True"):
        TextSupervision(TINY_CLIP)
    # online, the tag goes to open_clip's own loader
    asked = []
    real = open_clip.create_model
    monkeypatch.setattr(open_clip, "create_model", lambda name, pretrained=None: asked.append((name, pretrained))
                        or real(TINY_CLIP, pretrained=None))
    TextSupervision("ViT-B-32", pretrained="laion2b_s34b_b79k", offline=False)
    assert asked == [("ViT-B-32", "laion2b_s34b_b79k")]


def test_shared_attention_shape_and_extra_cost():
    base = create_model("unet", 6, width=8)
    sa = SharedAttention(base, 6, embed_dim=32, heads=4, patch=8, block_size=8)
    x = torch.rand(2, 3, 40, 56)
    enhanced, regenerated, redacted = sa.forward_train(x)
    assert enhanced.shape == (2, 6, 40, 56) and regenerated.shape == redacted.shape == x.shape
    base_cost, sa_cost = model_cost(base, (64, 64)), model_cost(sa, (64, 64))
    assert sa_cost["parameters"] > base_cost["parameters"] and sa_cost["flops"] > base_cost["flops"]
    via_factory = create_model("dejavu_sa", 6, base={"name": "unet", "width": 8}, embed_dim=32, block_size=8)
    assert model_cost(via_factory, (64, 64)) == sa_cost


def test_ddep_noise_follows_the_formula():
    task, g = Denoising(gamma=0.7), torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 64, 64)
    out = task.prepare({"image": x}, g)
    eps = out["noise"]
    expected = math.sqrt(0.7) * (2 * x - 1) + math.sqrt(0.3) * eps
    torch.testing.assert_close(out["image"] * 2 - 1, expected)
    assert abs(eps.mean()) < 0.02 and abs(eps.std() - 1) < 0.02
    assert task.loss(eps, out) == 0 and task.loss(torch.zeros_like(eps), out) > 0.9
    again = task.prepare({"image": x}, torch.Generator().manual_seed(0))
    assert torch.equal(again["image"], out["image"])
    with pytest.raises(ValueError, match="gamma"):
        Denoising(gamma=1.0)


def test_masked_modelling_scores_masked_pixels_only():
    task = MaskedModeling(block_size=8, ratio=0.75)
    x = torch.rand(4, 3, 64, 64) * 0.9 + 0.05
    out = task.prepare({"image": x}, torch.Generator().manual_seed(0))
    removed = out["removed"]
    assert abs(removed.float().mean() - 0.75) < 0.1
    assert (out["image"][removed.expand_as(x)] == 0).all()
    assert torch.equal(out["image"][~removed.expand_as(x)], x[~removed.expand_as(x)])
    garbage_outside = torch.where(removed, x, torch.full_like(x, 7.0))
    assert task.loss(garbage_outside, out) == 0


@pytest.mark.parametrize("fraction", [0.01, 0.05, 0.1, 0.25, 1.0])
def test_label_fractions_are_exact_and_reproducible(fraction):
    subset = label_subset(512, fraction, seed=3)
    assert len(subset) == max(1, round(fraction * 512)) == len(set(subset))
    assert subset == label_subset(512, fraction, seed=3)
    if fraction < 1:
        assert subset != label_subset(512, fraction, seed=4)
    dm = DenseDataModule(train_length=512, label_fraction=fraction, seed=3)
    assert len(dm.train_dataset()) == len(subset)


def test_label_fraction_is_checked():
    with pytest.raises(ValueError, match="label_fraction"):
        DenseDataModule(label_fraction=0)


def test_pretrained_network_loads_all_but_the_new_head(tmp_path):
    pre = create_model("unet", 3, width=8)
    torch.save(pre.state_dict(), tmp_path / "pre.pt")
    fine = create_model("unet", 6, width=8)
    skipped = load_weights(fine, tmp_path / "pre.pt", strict=False)
    assert skipped == ["head.bias", "head.weight"]
    assert torch.equal(fine.down[0][0].weight, pre.down[0][0].weight)
    with pytest.raises(ValueError, match="shares no parameter"):
        torch.save({"x": torch.zeros(1)}, tmp_path / "other.pt")
        load_weights(fine, tmp_path / "other.pt", strict=False)


def _fit(config: str, run_dir, *extra: str) -> dict:
    import json

    from dejavu.training.lightning_cli import DejaVuCLI

    path = ROOT / "configs" / "extensions" / config
    DejaVuCLI(args=["fit", "--config", str(path), "--run_dir", str(run_dir),
                    "--data.size", "[32, 32]", "--data.train_length", "16", "--data.val_length", "8",
                    "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false", *extra])
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.parametrize("config", ["cl.yaml", "sa.yaml", "augment.yaml", "mae_pretrain.yaml"])
def test_extension_configs_train(config, tmp_path):
    metrics = _fit(config, tmp_path / "run")
    assert metrics["steps"] == 2 and (tmp_path / "run" / "figure.png").is_file()


def test_ts_config_trains_with_a_tiny_clip(tmp_path):
    _fit("ts.yaml", tmp_path / "run", "--model.auxiliaries",
         "[{name: text, model: dejavu-tiny-clip, random_init: true, class_names: [a, b, c, d, e, f]}]")


def test_ddep_pretrain_then_dejavu_finetune(tmp_path):
    offline = ["--model.network.encoder_weights", "null"]  # ImageNet's, online; here a random frozen encoder
    pre = _fit("ddep_pretrain.yaml", tmp_path / "pre", *offline)
    assert "val/noise_mse" in pre["val"]
    fine = _fit("ddep_dejavu_finetune.yaml", tmp_path / "fine", "--model.pretrained",
                str(tmp_path / "pre" / "model.safetensors"), "--data.label_fraction", "0.25", *offline)
    assert fine["steps"] == 1 and "val/mIoU" in fine["val"]  # 4 of 16 images: one batch


def _norm_buffers(module: nn.Module) -> list[torch.Tensor]:
    return [b.clone() for n, b in module.named_buffers() if "running" in n or "num_batches" in n]


def test_cyclic_step_updates_batch_norm_statistics_once_from_real_images():
    """DejaVu-CL's second pass (on the regenerated image) must not touch the running statistics."""
    from dejavu.training import DejaVuModule

    torch.manual_seed(0)
    module = DejaVuModule({"name": "unet", "width": 8, "depth": 2}, {"name": "segmentation", "num_classes": 4},
                          dejavu={"redaction": "checkerboard", "lpips_weight": 0},
                          auxiliaries=[{"name": "cyclic", "weight": 0.1}],
                          channels_last=False)
    assert _norm_buffers(module.net)
    batch = {"image": torch.rand(2, 3, 32, 32), "semantic": torch.randint(0, 4, (2, 32, 32))}
    reference = copy.deepcopy(module.net).train()
    with torch.no_grad():
        reference(batch["image"])  # one update, from the real images
    module.train()
    module.training_step(batch, 0)
    for got, want in zip(_norm_buffers(module.net), _norm_buffers(reference), strict=True):
        torch.testing.assert_close(got, want)


def test_shared_attention_inference_runs_only_the_prediction_path():
    torch.manual_seed(0)
    sa = SharedAttention(create_model("unet", 6, width=8), 6, embed_dim=16, heads=2, patch=8, block_size=8).eval()
    calls = []
    sa.decode_image.register_forward_hook(lambda *_: calls.append("D_r"))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        enhanced = sa(x)
        assert calls == []
        torch.testing.assert_close(enhanced, sa.forward_train(x)[0])
    assert calls == ["D_r"]
    # model_cost leaves out D_r (two 3x3 convolutions at full resolution), which inference does not run
    d_r = sum(2 * m.weight.numel() * 64 * 64 for m in sa.decode_image if isinstance(m, nn.Conv2d))
    full = model_cost(sa, (64, 64))["flops"]
    sa.forward = lambda image: sa.forward_train(image)[0]
    assert model_cost(sa, (64, 64))["flops"] - full == d_r


def test_shared_attention_trains_with_lpips_kept_out_of_checkpoints():
    from dejavu.training import DejaVuModule

    module = DejaVuModule({"name": "dejavu_sa", "base": {"name": "unet", "width": 8, "depth": 2}, "embed_dim": 16,
                           "heads": 2, "block_size": 8}, {"name": "segmentation", "num_classes": 4},
                          auxiliaries=[{"name": "sa", "lpips_weights": "random"}], channels_last=False)
    batch = {"image": torch.rand(2, 3, 32, 32), "semantic": torch.randint(0, 4, (2, 32, 32))}
    with_lpips = module.training_step(batch, 0)
    module.auxiliaries["sa"].lpips_weight = 0.0
    assert with_lpips > module.training_step(batch, 0)  # the perceptual term is part of SA's loss
    assert not any(".lpips." in k for k in module.state_dict())
