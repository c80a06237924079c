"""From a trained run to prediction files and exported programs; pretrained backbones as torchvision
and timm store them; the training command keeps the user's logger; optimiser groups and warm-up."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import ROOT
from PIL import Image
from safetensors.torch import load_file, save_file

from dejavu.cli import deploy
from dejavu.cli import main as dejavu
from dejavu.cli.deploy import export, load_run, predict
from dejavu.data import SyntheticScenes
from dejavu.models import create_model
from dejavu.training.optim import parameter_groups

EXPORT_TOLERANCE = 1e-4  # largest absolute difference of an exported program's output from the eager network's


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny multi-task DejaVu run (segmentation, depth, normals), so every output kind is written and
    the CRM exists in training."""
    root = tmp_path_factory.mktemp("deploy")
    config = {
        "model": {"network": {"name": "unet", "width": 4, "depth": 2},
                  "task": {"name": "multitask", "tasks": [{"name": "segmentation"}, {"name": "depth"},
                                                          {"name": "normals"}]},
                  "dejavu": {"redaction": {"name": "checkerboard", "block_size": 8}, "lpips_weight": 0.0},
                  "optim": {"name": "adamw", "lr": 0.003}},
        "data": {"dataset": "synthetic", "size": [32, 32], "batch_size": 4, "train_length": 8, "val_length": 4},
        "trainer": {"max_epochs": 1, "enable_progress_bar": False, "enable_model_summary": False},
        "figure_images": 1,
    }
    (root / "c.yaml").write_text(yaml.safe_dump(config))
    dejavu(["fit", "--config", str(root / "c.yaml"), "--run_dir", str(root / "run")])
    images = root / "images"
    images.mkdir()
    for i, size in enumerate(((40, 56), (32, 32), (24, 70))):  # any size: resized for the network and back
        rgb = (SyntheticScenes(3, size=size)[i]["image"].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        Image.fromarray(rgb).save(images / f"scene{i}.png")
    return root


def test_predict_writes_the_documented_files(run, tmp_path):
    out = tmp_path / "pred"
    dejavu(["predict", str(run / "run"), str(run / "images"), "--out", str(out), "--overlay", "--raw-ids"])
    meta = json.loads((run / "run" / "model.json").read_text())
    assert meta["input_size"] == [32, 32] and len(meta["classes"]) == 6
    seg = Image.open(out / "scene2.png")
    assert seg.mode == "P" and seg.size == (70, 24) and seg.getpalette()[:6] == [c for rgb in meta["palette"][:2]
                                                                                  for c in rgb]
    assert np.array_equal(np.asarray(seg), np.asarray(Image.open(out / "scene2_ids.png")))
    depth_png, depth = Image.open(out / "scene0_depth.png"), np.load(out / "scene0_depth.npy")
    assert depth_png.mode.startswith("I;16") and depth.shape == (40, 56) and depth.dtype == np.float32
    assert np.allclose(np.asarray(depth_png) / 256, depth, atol=1 / 256)
    assert Image.open(out / "scene1_normals.png").mode == "RGB"
    overlay = np.asarray(Image.open(out / "scene0_overlay.png").convert("RGB"), np.int64)
    assert overlay.shape[1] == 3 * 56 and overlay.shape[0] > 40  # segmentation blended, depth, normals; a legend
    image = np.asarray(Image.open(run / "images" / "scene0.png").convert("RGB"), np.int64)
    classes = np.asarray(Image.open(out / "scene0.png").convert("RGB"), np.int64)
    assert np.abs(overlay[:40, :56] - (image + classes) // 2).max() <= 1  # half image, half class colour
    with pytest.raises(FileExistsError, match=r"scene0\.png exists .*--overwrite"):
        predict(run / "run", str(run / "images"), out)
    predict(run / "run", str(run / "images" / "*.png"), out, overwrite=True, batch_size=2)


def test_predict_errors_name_the_problem(run, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"not a finished run folder: it lacks model\.json"):
        predict(tmp_path, str(run / "images"), tmp_path / "o")
    with pytest.raises(FileNotFoundError, match="no image in"):
        predict(run / "run", str(tmp_path / "nowhere"), tmp_path / "o")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"cannot read image file .*bad\.png"):
        predict(run / "run", str(tmp_path / "bad.png"), tmp_path / "o")


def test_a_run_loads_as_a_module_in_one_line(run):
    """`load_model(RUN)`: the trained network, eval mode, the exported weights; the ONNX file's
    input is named `image` and its output `prediction`, as docs/training.md says."""
    from dejavu.runs import load_model

    net = load_model(run / "run")
    assert isinstance(net, torch.nn.Module) and not net.training
    weights = load_file(str(run / "run" / "model.safetensors"))
    assert all(torch.equal(v, weights[k]) for k, v in net.state_dict().items())
    assert net(torch.rand(1, 3, 32, 32)).shape == (1, 6 + 1 + 3, 32, 32)
    docs = (ROOT / "docs" / "training.md").read_text()
    assert 'load_model("runs/' in docs and "input `image`" in docs and "output `prediction`" in docs


@pytest.mark.parametrize("fmt", ["onnx", "exported-program"])
def test_export_matches_the_eager_network_without_the_crm(run, fmt, tmp_path):
    out, diff = export(run / "run", fmt, tmp_path / f"m.{fmt}", size=(48, 64))
    assert out.is_file() and diff < EXPORT_TOLERANCE
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # one file: ONNX wrote its weights to m.onnx.data
    if fmt == "onnx":  # the command: its default file is in the run folder
        dejavu(["export", str(run / "run"), "--format", "onnx", "--size", "32", "32"])
        assert (run / "run" / "model.onnx").is_file()
    net, _, meta = load_run(run / "run")
    x = torch.rand(3, 3, 40, 56)  # another batch and size than the export's example: the shapes are dynamic
    if fmt == "onnx":
        import onnx
        import onnxruntime

        got = onnxruntime.InferenceSession(str(out)).run(None, {"image": x.numpy()})[0]
        weights = sum(int(np.prod(t.dims)) for t in onnx.load(str(out)).graph.initializer)
    else:
        program = torch.export.load(out)
        got = program.module()(x).detach().numpy()
        weights = sum(v.numel() for v in program.state_dict.values())
    assert np.abs(got - net(x).detach().numpy()).max() < EXPORT_TOLERANCE
    assert weights <= meta["parameters"] + 1000  # the network's weights (and BN statistics), no CRM's


def test_torchvision_and_timm_checkpoints_load_into_smp_encoders(tmp_path):
    import timm
    import torchvision

    tv = torchvision.models.resnet18()
    torch.save(tv.state_dict(), tmp_path / "resnet18-f37072fd.pth")
    model = create_model("smp:Unet", 3, encoder="resnet18", encoder_weights=str(tmp_path / "resnet18-f37072fd.pth"))
    torch.testing.assert_close(model.encoder.conv1.weight, tv.conv1.weight)
    tm = timm.create_model("resnet18", pretrained=False)
    save_file(tm.state_dict(), str(tmp_path / "model.safetensors"))  # as timm's hub repositories store it
    model = create_model("smp:Unet", 3, encoder="tu-resnet18", encoder_weights=str(tmp_path / "model.safetensors"))
    torch.testing.assert_close(model.encoder.model.conv1.weight, tm.conv1.weight)
    from dejavu.models import load_encoder_weights

    report = load_encoder_weights(create_model("smp:Unet", 3, encoder="resnet18").encoder,
                                  tmp_path / "resnet18-f37072fd.pth")
    assert report["unused"] == ["fc.bias", "fc.weight"] and "conv1.weight" in report["loaded"]
    torch.save(create_model("unet", 3).state_dict(), tmp_path / "unet.pt")
    with pytest.raises(ValueError, match=r"unet\.pt does not fit the ResNetEncoder encoder: missing parameter"):
        create_model("smp:Unet", 3, encoder="resnet18", encoder_weights=str(tmp_path / "unet.pt"))


def test_the_users_logger_is_kept(tmp_path):
    config = {"model": {"network": {"name": "unet", "width": 4, "depth": 2},
                        "task": {"name": "segmentation", "num_classes": 6}},
              "data": {"dataset": "synthetic", "size": [32, 32], "batch_size": 4, "train_length": 8, "val_length": 4},
              "trainer": {"max_epochs": 1, "enable_progress_bar": False, "log_every_n_steps": 1,
                          "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                                     "init_args": {"save_dir": str(tmp_path / "csv")}}},
              "figure_images": 1}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    dejavu(["fit", "--config", str(tmp_path / "c.yaml"), "--run_dir", str(tmp_path / "run")])
    assert list((tmp_path / "csv").rglob("metrics.csv")) and not (tmp_path / "run" / "tensorboard").exists()


def test_parameter_groups_and_warm_up():
    net = create_model("smp:Unet", 3, encoder="resnet18")
    groups = parameter_groups(net, lr=0.01, weight_decay=1e-4, head_lr_mult=10, no_decay_norm_bias=True)
    by_id = {id(p): g for g in groups for p in g["params"]}
    assert by_id[id(net.encoder.conv1.weight)]["lr"] == 0.01 and by_id[id(net.encoder.conv1.weight)]["weight_decay"]
    assert by_id[id(net.segmentation_head[0].weight)]["lr"] == pytest.approx(0.1)
    assert by_id[id(net.encoder.bn1.weight)]["weight_decay"] == 0 and by_id[id(net.segmentation_head[0].bias)][
        "weight_decay"] == 0
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    plain = parameter_groups(net, lr=0.01, weight_decay=1e-4)
    assert len(plain) == 1 and plain[0]["lr"] == 0.01
    vit = create_model("upernet_vit", 3, encoder="vit_tiny_patch16_224", encoder_kwargs={"depth": 1}, layers=[0] * 4,
                       neck_channels=8, decoder_channels=8, aux_channels=8)
    by_id = {id(p): g for g in parameter_groups(vit, 0.01, 1e-4, no_decay_norm_bias=True) for p in g["params"]}
    assert by_id[id(vit.encoder.pos_embed)]["weight_decay"] == by_id[id(vit.encoder.cls_token)]["weight_decay"] == 0
    assert by_id[id(vit.encoder.blocks[0].attn.qkv.weight)]["weight_decay"] == 1e-4  # mmsegmentation's ViT recipe
    from dejavu.training.module import DejaVuModule

    module = DejaVuModule({"name": "unet", "width": 4, "depth": 2}, {"name": "segmentation", "num_classes": 3},
                          optim={"lr": 0.01, "warmup_steps": 4})
    optimizer = module.configure_optimizers()["optimizer"]
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 / 4)  # step 0 of a 4-step linear warm-up


def test_predict_refuses_batch_sizes_and_sizes_that_write_nothing(run, tmp_path, capsys):
    """A --batch-size below 1 is refused by name before anything is read or written."""
    for bad in ("-1", "0"):
        with pytest.raises(SystemExit):
            dejavu(["predict", str(run / "run"), str(run / "images"), "--out", str(tmp_path / "o"),
                    "--batch-size", bad])
        assert "--batch-size must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        dejavu(["predict", str(run / "run"), str(run / "images"), "--out", str(tmp_path / "o"), "--size", "0", "8"])
    assert "--size must be at least 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--batch-size must be at least 1, got -1"):
        predict(run / "run", str(run / "images"), tmp_path / "o", batch_size=-1)
    assert not (tmp_path / "o").exists()


def test_predict_reads_every_photo_format_upright(run, tmp_path):
    """Every photo format Pillow reads (.bmp, .tif, .webp beside PNG and JPEG) is predicted, upright as its EXIF
    orientation says."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rgb = (np.random.default_rng(0).random((20, 36, 3)) * 255).astype(np.uint8)
    for suffix in (".bmp", ".tif", ".webp", ".JPG"):
        Image.fromarray(rgb).save(folder / f"p{suffix.lower()[1:]}{suffix}")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the stored pixels are to be turned 90 degrees clockwise
    Image.fromarray(rgb).save(folder / "phone.jpg", exif=exif)
    written = predict(run / "run", str(folder), tmp_path / "o")
    stems = {p.name.split(".")[0].split("_")[0] for p in written}
    assert stems == {"pbmp", "ptif", "pwebp", "pjpg", "phone"}
    assert Image.open(tmp_path / "o" / "pbmp.png").size == (36, 20)
    assert Image.open(tmp_path / "o" / "phone.png").size == (20, 36)  # upright: 36 high, 20 wide


def test_a_killed_predict_or_export_leaves_no_partial_file_under_its_name(run, tmp_path, monkeypatch):
    """A kill while writing leaves no 0-byte or truncated file under a final name."""
    def killed(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        predict(run / "run", str(run / "images"), tmp_path / "o")
    assert list((tmp_path / "o").iterdir()) == []
    monkeypatch.undo()
    monkeypatch.setattr(torch.export, "save", lambda program, f: (Path(f).write_bytes(b"PK half"),
                                                                  (_ for _ in ()).throw(KeyboardInterrupt())))
    with pytest.raises(KeyboardInterrupt):
        export(run / "run", "exported-program", tmp_path / "e" / "m.pt2", size=(32, 32))
    assert list((tmp_path / "e").iterdir()) == []


KILLED_WHILE_WRITING = """
import os, signal, sys
from pathlib import Path

def killed(*args, **kwargs):  # half a file under the name it was given, then SIGKILL: no handler runs
    target = next(a for a in args if isinstance(a, (str, Path)))
    Path(target).write_bytes(b"half")
    os.kill(os.getpid(), signal.SIGKILL)

import torch
from PIL import Image
Image.Image.save = lambda self, fp, *a, **k: killed(fp)
torch.export.save = lambda program, f, *a, **k: killed(f)
from dejavu.cli import main
main(sys.argv[1:])
"""


@pytest.mark.slow
@pytest.mark.parametrize("command", ["predict", "export"])
def test_sigkill_while_writing_leaves_no_file_under_a_final_name(run, tmp_path, command):
    """The predict and export kill windows with a real SIGKILL: no clean-up code runs, and still no
    file appears under its final name; the same command then completes."""
    import subprocess
    import sys

    out = tmp_path / "o"
    args = (["predict", str(run / "run"), str(run / "images"), "--out", str(out)] if command == "predict" else
            ["export", str(run / "run"), "--format", "exported-program", "--out", str(out / "m.pt2"), "--size", "32",
             "32"])
    killed = subprocess.run([sys.executable, "-c", KILLED_WHILE_WRITING, *args], capture_output=True, text=True,
                            timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == []  # only the temporary file
    dejavu(args)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # the rerun renamed it into place
    assert (out / ("scene0.png" if command == "predict" else "m.pt2")).stat().st_size > 100


def test_export_refuses_outputs_and_sizes_that_would_go_wrong(run, tmp_path, capsys, monkeypatch):
    """--out RUN/model.safetensors overwrote the run's weights; --size 1 1 gave a program specialised to
    1x1; --size 0 0 failed with a convolution's kernel-size error; --out under a file named torch's
    temporary file."""
    weights = (run / "run" / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match=r"would replace the run's own model\.safetensors"):
        export(run / "run", "exported-program", run / "run" / "model.safetensors", size=(32, 32))
    assert (run / "run" / "model.safetensors").read_bytes() == weights
    with pytest.raises(ValueError, match=r"--size must be at least 2 2 .*specialised"):
        export(run / "run", "exported-program", tmp_path / "m.pt2", size=(1, 1))
    with pytest.raises(SystemExit):
        dejavu(["export", str(run / "run"), "--size", "0", "0"])
    assert "--size must be at least 2, got 0" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"lies under .*file, which is a file"):
        export(run / "run", "exported-program", tmp_path / "file" / "m.pt2", size=(32, 32))
    _, task, meta = load_run(run / "run")
    monkeypatch.setattr(deploy, "load_run", lambda _: (torch.nn.Conv2d(3, 1, 5), task, meta))  # needs 5x5 pixels
    with pytest.raises(ValueError, match=r"cannot run on an example of --size 2 2 \(.*\); give a larger --size"):
        export(run / "run", "exported-program", tmp_path / "m.pt2", size=(2, 2))


def test_predict_batches_images_of_their_own_size(run, tmp_path, monkeypatch):
    """At native size, the images of one size in a batch run together (--batch-size holds), and the files are
    the same as one at a time."""
    meta = json.loads((run / "run" / "model.json").read_text())
    native = {**meta, "input_size": None}
    monkeypatch.setattr(deploy, "load_run", lambda path: (*load_run(path)[:2], native))
    folder = tmp_path / "same"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.full((24, 40, 3), 50 * i, np.uint8)).save(folder / f"s{i}.png")
    Image.fromarray(np.full((30, 20, 3), 9, np.uint8)).save(folder / "t.png")
    calls = []
    original = deploy._batched

    def counted(net, images, device):
        calls.append(len({im.shape for im in images}))
        return original(net, images, device)

    monkeypatch.setattr(deploy, "_batched", counted)
    batched = predict(run / "run", str(folder), tmp_path / "b", batch_size=5)
    assert calls == [2]  # one batch of five images, two sizes: two passes
    single = predict(run / "run", str(folder), tmp_path / "one", batch_size=1)
    for a, b in zip(batched, single, strict=True):
        if a.suffix == ".npy":  # depth in metres
            assert np.allclose(np.load(a), np.load(b), atol=1e-4)
        else:  # 8- or 16-bit images: a rounding step at most
            assert np.abs(np.asarray(Image.open(a), np.int64) - np.asarray(Image.open(b), np.int64)).max() <= 1


def test_a_task_defined_outside_the_package_is_drawn_saved_and_exported(run, tmp_path, monkeypatch):
    """A Task subclass of the user's own is asked for its files, its views and its output names: predict
    writes its map and an overlay beside the image, the training figure draws it in colour, the export
    names its output as the task says."""
    import onnx

    from dejavu.tasks import Task
    from dejavu.training.figures import dejavu_figure

    class Edges(Task):
        name, key, channels, monitor = "edges", "edges", 1, ("edge_mse", "min")
        output_names = ("edge_logits",)

    _, _, meta = load_run(run / "run")
    net = torch.nn.Conv2d(3, 1, 3, padding=1)
    monkeypatch.setattr(deploy, "load_run", lambda _: (net.eval(), Edges(), meta))
    out = tmp_path / "pred"
    written = predict(run / "run", str(run / "images"), out, overlay=True)
    assert sorted(p.name for p in written) == sorted(p.name for p in out.iterdir())
    assert np.load(out / "scene0_edges.npy").shape == (1, 40, 56)
    assert np.asarray(Image.open(out / "scene0_overlay.png")).shape == (40, 2 * 56, 3)  # the image, its view

    view = Edges().view(torch.randn(1, 16, 16))
    assert view.shape == (16, 16, 3) and view.min() == 0 and view.max() == 1
    images = torch.rand(2, 3, 16, 16)
    path = dejavu_figure(tmp_path / "f.png", images, Edges(), {"edges": torch.rand(2, 1, 16, 16)},
                         {"prediction": torch.randn(2, 1, 16, 16)})
    assert path.is_file()

    exported, diff = export(run / "run", "onnx", tmp_path / "m.onnx", size=(16, 16))
    assert [o.name for o in onnx.load(str(exported)).graph.output] == ["edge_logits"] and diff < EXPORT_TOLERANCE
