"""DDeP as its paper describes it: the decoder denoised on a frozen supervised encoder, fine-tuning from
both, and the paper's ablations as settings, each computing what it says."""

import math

import pytest
import torch
from safetensors.torch import save_file

from dejavu.models import create_model
from dejavu.tasks import Denoising
from dejavu.training.module import DejaVuModule

UNET = {"name": "smp:Unet", "encoder": "resnet18", "decoder_channels": [32, 16, 16, 8, 8]}
TRANSUNET = {"name": "transunet", "encoder_kwargs": {"embed_dim": 32, "depth": 1, "num_heads": 2},
             "decoder_channels": [16, 8, 8, 4], "head_channels": 16}  # the paper's network, a 1-block ViT


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.fixture
def encoder_file(tmp_path):
    """A "supervised" encoder checkpoint, as torchvision stores a ResNet (here: random weights, non-trivial
    batch-norm statistics)."""
    torch.manual_seed(1)
    encoder = create_model("smp:Unet", 3, **{k: v for k, v in UNET.items() if k != "name"}).encoder
    for m in encoder.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    path = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in encoder.state_dict().items()}, str(path))
    return path, state(encoder)


def steps(module: DejaVuModule, batches: int = 3) -> None:
    """A few training steps as Lightning runs them: train mode, the step, the optimiser."""
    optimizer = module.configure_optimizers()["optimizer"]
    module.log = module.log_dict = lambda *a, **k: None
    module.train()
    for i in range(batches):
        loss = module.training_step({"image": torch.rand(2, 3, 32, 32),
                                     "semantic": torch.randint(0, 3, (2, 32, 32))}, i)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_decoder_denoising_keeps_the_encoder_bit_identical_and_trains_the_decoder(encoder_file, caplog):
    path, loaded = encoder_file
    with caplog.at_level("INFO"):
        module = DejaVuModule({**UNET, "encoder_weights": str(path)}, {"name": "denoising"}, frozen=["encoder"])
        DejaVuModule(UNET, {"name": "denoising"}, frozen=["encoder"])
    assert f"model.frozen: encoder (11.18 M parameters) kept as loaded from {path}" in caplog.text
    assert "kept as loaded from nowhere: random initialisation (give encoder_weights" in caplog.text
    decoder = state(module.net.decoder)
    assert all(torch.equal(state(module.net.encoder)[k], v) for k, v in loaded.items())
    steps(module)
    assert not module.net.encoder.training and module.net.decoder.training
    after = state(module.net.encoder)
    assert after.keys() == loaded.keys() and all(torch.equal(after[k], v) for k, v in loaded.items())  # BN too
    changed = [k for k, v in state(module.net.decoder).items() if not torch.equal(v, decoder[k])]
    assert any("weight" in k for k in changed) and any("running_mean" in k for k in changed)


def test_fine_tuning_starts_from_the_encoder_and_the_denoised_decoder(encoder_file, tmp_path):
    path, loaded = encoder_file
    pretraining = DejaVuModule({**UNET, "encoder_weights": str(path)}, {"name": "denoising"}, frozen=["encoder"])
    steps(pretraining)
    weights = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in pretraining.net.state_dict().items()}, str(weights))
    denoised = state(pretraining.net.decoder)
    fine = DejaVuModule(UNET, {"name": "segmentation", "num_classes": 3}, pretrained=str(weights))
    assert all(torch.equal(state(fine.net.encoder)[k], v) for k, v in loaded.items())
    assert all(torch.equal(state(fine.net.decoder)[k], v) for k, v in denoised.items())
    assert fine.net.segmentation_head[0].out_channels == 3  # the denoising head (3 noise channels) is a new one
    assert all(p.requires_grad for p in fine.net.parameters())  # fine-tuning trains everything
    full = DejaVuModule(UNET, {"name": "denoising"}, frozen=[])  # the whole encoder-decoder variant
    assert all(p.requires_grad for p in full.net.parameters())
    with pytest.raises(ValueError, match=r"the network has no part 'backbone'; its parts are \['encoder'"):
        DejaVuModule(UNET, {"name": "denoising"}, frozen=["backbone"])


def test_ddep_on_transunet_keeps_the_hybrid_vit_as_loaded_and_fine_tunes_from_both(tmp_path):
    """The paper's network: a checkpoint of timm's hybrid ViT, by timm's own names, is the frozen encoder."""
    torch.manual_seed(1)
    vit = create_model("transunet", 3, **{k: v for k, v in TRANSUNET.items() if k != "name"}).encoder
    path = tmp_path / "vit_base_r50_s16_224.safetensors"
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(path))
    loaded = state(vit)
    module = DejaVuModule({**TRANSUNET, "encoder_weights": str(path)}, {"name": "denoising"}, frozen=["encoder"])
    decoder = state(module.net.decoder)
    steps(module, 2)
    after = state(module.net.encoder)
    assert after.keys() == loaded.keys() and all(torch.equal(after[k], v) for k, v in loaded.items())
    denoised = state(module.net.decoder)
    assert all(not torch.equal(v, decoder[k]) for k, v in denoised.items() if k.endswith("weight"))
    weights = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in module.net.state_dict().items()}, str(weights))
    fine = DejaVuModule(TRANSUNET, {"name": "segmentation", "num_classes": 5}, pretrained=str(weights))
    assert all(torch.equal(state(fine.net.encoder)[k], v) for k, v in loaded.items())
    assert all(torch.equal(state(fine.net.decoder)[k], v) for k, v in denoised.items())
    assert fine.net.head.out_channels == 5  # the 3-channel denoising head is dropped


def test_each_ablation_setting_computes_what_its_name_says():
    image = torch.full((1, 3, 2, 2), 0.75)  # x = 0.5 in [-1, 1]
    eps = torch.randn(1, 3, 2, 2, generator=torch.Generator().manual_seed(0))

    def prepared(task):
        return task.prepare({"image": image}, torch.Generator().manual_seed(0))

    zeros = torch.zeros(1, 3, 2, 2)
    scaled = prepared(Denoising(gamma=0.64))  # sqrt(0.64) = 0.8, sqrt(0.36) = 0.6
    torch.testing.assert_close(scaled["image"], (0.8 * 0.5 + 0.6 * eps + 1) / 2)
    assert Denoising(gamma=0.64).loss(zeros, scaled) == pytest.approx(float(eps.square().mean()))  # predicts eps
    image_task = Denoising(gamma=0.64, target="image")
    assert image_task.loss(zeros, prepared(image_task)) == pytest.approx(0.25)  # predicts x: (0 - 0.5)^2
    assert image_task.loss(torch.full_like(zeros, 0.5), prepared(image_task)) == 0
    additive = Denoising(noise="additive", sigma=0.2)
    out = prepared(additive)
    torch.testing.assert_close(out["image"], (0.5 + 0.2 * eps + 1) / 2)
    assert additive.loss(0.5 * eps, out) == pytest.approx(float((0.5 * eps).square().mean()))
    assert math.isclose(Denoising(gamma=0.2).gamma, 0.2)  # the level: any in (0, 1), one per run
    for bad, message in (({"target": "x"}, "target must be"), ({"noise": "additive"}, "sigma .* sets the level"),
                         ({"sigma": 0.1}, "only of it"), ({"noise": "pink"}, "noise must be")):
        with pytest.raises(ValueError, match=message):
            Denoising(**bad)


def test_the_decoders_width_is_the_networks_setting():
    narrow = create_model("smp:Unet", 3, encoder="resnet18", decoder_channels=[32, 16, 16, 8, 8])
    wide = create_model("smp:Unet", 3, encoder="resnet18", decoder_channels=[512, 256, 128, 64, 32])
    count = lambda net: sum(p.numel() for p in net.decoder.parameters())  # noqa: E731
    assert count(wide) > 20 * count(narrow)


def test_dejavu_fit_of_the_ddep_config_exports_the_encoder_it_loaded(tmp_path):
    """Through Lightning (which sets train mode itself at each epoch): the exported weights hold the loaded
    encoder, batch-norm statistics included, bit for bit."""
    from helpers import CONFIGS
    from safetensors.torch import load_file

    from dejavu.training.lightning_cli import DejaVuCLI

    torch.manual_seed(1)
    encoder = create_model("smp:Unet", 3, encoder="resnet18").encoder
    for m in encoder.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
    path = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in encoder.state_dict().items()}, str(path))
    config = next(c for c in CONFIGS if c.parent.name == "extensions" and c.name == "ddep_pretrain.yaml")
    DejaVuCLI(args=["fit", "--config", str(config), "--run_dir", str(tmp_path / "run"), "--data.size", "[32, 32]",
                    "--data.train_length", "16", "--data.val_length", "8", "--trainer.max_epochs", "2",
                    "--trainer.enable_progress_bar", "false", "--model.network.encoder_weights", str(path)])
    exported = load_file(str(tmp_path / "run" / "model.safetensors"))
    loaded = encoder.state_dict()
    assert all(torch.equal(exported[f"encoder.{k}"], v) for k, v in loaded.items())
    start = create_model("smp:Unet", 3, encoder="resnet18").decoder.state_dict()
    assert any(not torch.equal(exported[f"decoder.{k}"], v) for k, v in start.items() if "running_mean" in k)
