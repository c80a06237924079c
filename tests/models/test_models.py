import pytest
import torch
from safetensors.torch import save_file

from dejavu.models import MODELS, create_model, register_model


@pytest.mark.parametrize("name,out,kwargs,expected", [
    ("unet", 6, {"width": 8}, 6),
    ("unet", [6, 1, 3], {"width": 8}, 10),
    ("segnet_mtl", [6, 1, 3], {"width": 8}, 10),
    ("smp:Unet", 5, {"encoder": "resnet18"}, 5),
    ("smp:FPN", 5, {"encoder": "tu-hrnet_w18"}, 5),  # the paper's backbone, through timm
])
def test_factory_builds_working_networks(name, out, kwargs, expected):
    model = create_model(name, out, **kwargs)
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, expected, 64, 64)


def test_unet_handles_odd_sides():
    assert create_model("unet", 3, width=4)(torch.rand(1, 3, 45, 61)).shape == (1, 3, 45, 61)


def test_weights_load_from_local_file_only(tmp_path):
    a, b = create_model("unet", 4, width=8), create_model("unet", 4, width=8)
    torch.save(a.state_dict(), tmp_path / "w.pt")
    save_file(a.state_dict(), str(tmp_path / "w.safetensors"))
    for f in ("w.pt", "w.safetensors"):
        c = create_model("unet", 4, width=8, weights=tmp_path / f)
        for k, v in a.state_dict().items():
            assert torch.equal(c.state_dict()[k], v)
    assert not torch.equal(a.head.weight, b.head.weight)  # random init by default
    with pytest.raises(FileNotFoundError, match=r"missing\.pt does not exist"):
        create_model("unet", 4, weights=tmp_path / "missing.pt")
    with pytest.raises(ValueError, match=r"w\.pt does not match the model: parameter 'down\.0\.0\.weight'"):
        create_model("unet", 4, width=16, weights=tmp_path / "w.pt")


def test_registry():
    @register_model("tiny_test_net")
    def tiny(out_channels, **kwargs):
        return torch.nn.Conv2d(3, out_channels, 1)

    try:
        assert create_model("tiny_test_net", 2)(torch.rand(1, 3, 4, 4)).shape == (1, 2, 4, 4)
    finally:
        del MODELS["tiny_test_net"]
    with pytest.raises(ValueError, match="unknown model"):
        create_model("vit_giant", 3)


def test_encoder_weights_come_from_smp_and_the_hub(tmp_path, monkeypatch):
    import segmentation_models_pytorch as smp
    from safetensors.torch import save_file

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    # offline with nothing cached: the named error, for smp's own encoders and timm's
    for encoder, file in (("resnet18", "smp-hub/resnet18.imagenet"), ("tu-resnet18", "timm/resnet18.a1_in1k")):
        with pytest.raises(FileNotFoundError, match=rf"encoder='{encoder}'\) needs {file}.*not in the cache "
                                                    rf"{tmp_path / 'hub'}.*encoder_weights=PATH.*encoder_weights=None"):
            create_model("smp:Unet", 3, encoder=encoder, encoder_weights="imagenet", offline=True)
    # online: smp's own loader fetches from its hub repository
    encoder = smp.create_model("Unet", encoder_name="resnet18", encoder_weights=None, classes=3).encoder
    save_file(encoder.state_dict(), str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text("{}")
    asked = []

    def download(repo_id, filename, revision=None):
        asked.append((repo_id, filename))
        return str(tmp_path / filename)

    monkeypatch.setattr(smp.encoders, "hf_hub_download", download)
    model = create_model("smp:Unet", 3, encoder="resnet18", encoder_weights="imagenet", offline=False)
    assert ("smp-hub/resnet18.imagenet", "model.safetensors") in asked
    torch.testing.assert_close(model.encoder.conv1.weight, encoder.conv1.weight)
    # a local file is read as one, and wins
    torch.save(encoder.state_dict(), tmp_path / "enc.pt")
    local = create_model("smp:Unet", 3, encoder="resnet18", encoder_weights=str(tmp_path / "enc.pt"))
    torch.testing.assert_close(local.encoder.conv1.weight, encoder.conv1.weight)



def test_an_unreachable_hub_fails_fast(monkeypatch):
    """Offline but not told so, a Hub download fails at once (not after the Hub client's retries, 54 s)."""
    import socket
    import time

    from dejavu import weights

    def no_network(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.delenv("DEJAVU_OFFLINE")
    monkeypatch.setattr(socket, "create_connection", no_network)
    weights.hub_reachable.cache_clear()
    try:
        start = time.monotonic()
        with pytest.raises(FileNotFoundError, match=r"smp-hub/resnet34\.imagenet.*huggingface\.co cannot be reached"):
            create_model("smp:Unet", 3, encoder="resnet34", encoder_weights="imagenet")
        assert time.monotonic() - start < 10
    finally:
        weights.hub_reachable.cache_clear()


def test_networks_that_need_divisible_sides_take_any_size():
    """smp's FPN (and HRNet, UNet...) need sides divisible by 32: a 176x240 run failed in the sanity check
    with "Wrong input shape". The input is padded (edge pixels) to the next multiple and the output cropped."""
    import torch.nn.functional as F

    net = create_model("smp:FPN", 5, encoder="resnet18").eval()
    x = torch.rand(2, 3, 176, 240)
    with torch.no_grad():
        out = net(x)
        assert out.shape == (2, 5, 176, 240)
        padded = F.pad(x, (0, 16, 0, 16), mode="replicate")  # 192 x 256
        torch.testing.assert_close(out, net(padded)[..., :176, :240])
    assert set(net.state_dict()) == set(create_model("smp:FPN", 5, encoder="resnet18").state_dict())
