"""Every bad input is refused at the door with an error that names the culprit: one table, each case
asserting the exception type and a message fragment (the argument, the value, or the file)."""

import pickle
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from lightning.fabric.utilities.exceptions import MisconfigurationException
from PIL import Image
from safetensors.torch import save_file

from dejavu import DejaVuLoss, ForwardCRM, RecursiveCRM
from dejavu import redaction as R
from dejavu.arguments import ArgumentTypeError
from dejavu.cli.deploy import export, predict
from dejavu.data import CamVid, SyntheticScenes
from dejavu.dct import dct2, idct2
from dejavu.models import MODELS, create_model, load_weights, register_model
from dejavu.regeneration import build_crm
from dejavu.tasks import Depth, MultiTask, Normals, Segmentation, create_task
from dejavu.training.callbacks import atomic_write, read_checkpoint
from dejavu.training.datamodule import DenseDataModule
from dejavu.training.lightning_cli import DejaVuCLI
from dejavu.training.module import DejaVuModule
from dejavu.weights import read_tensors

IMG = torch.rand(2, 3, 16, 16)


def loss(n: int = 4, **kw) -> DejaVuLoss:
    return DejaVuLoss(n, **{"redaction": "checkerboard", "regenerator": "forward", "lpips_weight": 0, **kw})


def call(n: int = 4, image: torch.Tensor = IMG, pred: torch.Tensor | None = None, **kw):
    return loss(n, **kw)(image, torch.randn(image.shape[0], n, 16, 16) if pred is None else pred)


def labels(value: int) -> torch.Tensor:
    y = torch.zeros(2, 16, 16, dtype=torch.long)
    y[1, 3, 4] = value
    return y


@dataclass
class Case:
    id: str
    fn: Callable[[dict[str, Path]], object]
    exc: type[BaseException]
    match: str


CASES = [
    # ------------------------------------------------------------------ DCT and redaction
    Case("dct2 integer image", lambda f: dct2(torch.ones(4, 4, dtype=torch.long)), TypeError, "dct2.*floating"),
    Case("dct2 1-D", lambda f: dct2(torch.ones(4)), ValueError, "dct2"),
    Case("dct2 block_size 0", lambda f: dct2(torch.ones(4, 4), 0), ValueError, "block_size.*got 0"),
    Case("idct2 sides not multiples", lambda f: idct2(torch.ones(6, 6), 4), ValueError, r"\(6, 6\).*block_size=4"),
    Case("idct2 size larger", lambda f: idct2(torch.ones(8, 8), 4, size=(9, 8)), ValueError, r"size=\(9, 8\)"),
    Case("random_pixels p 1.5", lambda f: R.random_pixels(IMG, 1.5), ValueError, "p must be.*1.5"),
    Case("random_pixels integer image", lambda f: R.random_pixels(IMG.long(), 0.5), TypeError, "dtype torch.int64"),
    Case("checkerboard 3-D image", lambda f: R.checkerboard(IMG[0], 4), ValueError, r"\(B, C, H, W\).*\(3, 16, 16\)"),
    Case("checkerboard block 0", lambda f: R.checkerboard(IMG, 0), ValueError, "block_size.*got 0"),
    Case("checkerboard fill median", lambda f: R.checkerboard(IMG, 4, "median"), ValueError, "fill.*'median'"),
    Case("checkerboard not a tensor", lambda f: R.checkerboard(IMG.numpy(), 4), TypeError, "ndarray"),
    Case("random_blocks threshold -0.1", lambda f: R.random_blocks(IMG, 4, -0.1), ValueError, "threshold.*-0.1"),
    Case("lowpass cutoff 2", lambda f: R.lowpass(IMG, 2.0), ValueError, "cutoff.*2.0"),
    Case("bandstop band reversed", lambda f: R.bandstop(IMG, (0.5, 0.25)), ValueError, r"lo <= hi.*\(0.5, 0.25\)"),
    Case("bandstop band not a pair", lambda f: R.bandstop(IMG, 0.3), ValueError, "band must be a pair.*0.3"),
    Case("redaction unknown", lambda f: R.build("blur"), ValueError, "unknown redaction 'blur'"),
    Case("redaction bad argument", lambda f: R.build("checkerboard", size=3), ValueError, "'checkerboard'.*size"),
    Case("redaction spec a number", lambda f: R.as_redaction(42), ValueError, "got 42"),
    Case("Compose empty", lambda f: R.Compose([]), ValueError, "Compose: redactions must not be empty"),
    # ------------------------------------------------------------------ CRMs
    Case("ForwardCRM pred_channels 0", lambda f: ForwardCRM(0), ValueError, "pred_channels.*got 0"),
    Case("ForwardCRM conditioning add", lambda f: ForwardCRM(3, conditioning="add"), ValueError, "'add'"),
    Case("RecursiveCRM steps 0", lambda f: RecursiveCRM(3, steps=0), ValueError, "steps.*got 0"),
    Case("ForwardCRM init_scale -1", lambda f: ForwardCRM(3, init_scale=-1), ValueError, "init_scale.*-1"),
    Case("CRM condition channels", lambda f: ForwardCRM(3)(IMG, torch.rand(2, 4, 16, 16)), ValueError,
         r"\(B, 3, H, W\), got \(2, 4, 16, 16\)"),
    Case("CRM sizes differ", lambda f: ForwardCRM(3)(IMG, torch.rand(2, 3, 8, 8)), ValueError,
         "differ in batch or size"),
    Case("CRM a single pixel", lambda f: ForwardCRM(3)(IMG[:1, :, :1, :1], torch.rand(1, 3, 1, 1)), ValueError,
         "single pixel"),
    Case("build_crm unknown", lambda f: build_crm("diffusion", 3), ValueError, "'diffusion'"),
    # ------------------------------------------------------------------ DejaVuLoss construction
    Case("loss pred_channels 0", lambda f: loss(0), ValueError, "pred_channels.*got 0"),
    Case("loss gamma nan", lambda f: loss(gamma=float("nan")), ValueError, "gamma.*nan"),
    Case("loss mse_weight inf", lambda f: loss(mse_weight=float("inf")), ValueError, "mse_weight.*inf"),
    Case("loss lpips_weight -1", lambda f: loss(lpips_weight=-1), ValueError, "lpips_weight.*-1"),
    Case("loss ssim_weight text", lambda f: loss(ssim_weight="1"), ValueError, "ssim_weight.*'1'"),
    Case("loss adapter unknown", lambda f: loss(adapter="argmax"), ValueError, "adapter 'argmax'"),
    Case("loss mean without std", lambda f: loss(mean=[0.5] * 3), ValueError, "both mean and std"),
    Case("loss std 0", lambda f: loss(mean=[0.5] * 3, std=[0, 1, 1]), ValueError, r"std > 0.*\[0, 1, 1\]"),
    Case("loss value_range reversed", lambda f: loss(value_range=(1, 0)), ValueError, r"value_range.*\(1, 0\)"),
    Case("loss scale 0", lambda f: loss(scale=0), ValueError, "scale must be in.*got 0"),
    Case("loss lpips_steps", lambda f: loss(lpips_steps="first"), ValueError, "lpips_steps.*'first'"),
    Case("loss regenerator a number", lambda f: loss(regenerator=5), TypeError, "regenerator.*int"),
    Case("loss regenerator_weights missing", lambda f: loss(regenerator_weights=f["dir"] / "crm.safetensors"),
         FileNotFoundError, r"regenerator_weights .*crm\.safetensors does not exist"),
    Case("loss regenerator_weights text file", lambda f: loss(regenerator_weights=f["text"]), ValueError,
         r"regenerator_weights .*notes\.txt cannot be read"),
    Case("loss regenerator_weights of another CRM", lambda f: loss(7, regenerator_weights=f["crm"]), ValueError,
         r"crm4\.safetensors do not fit this ForwardCRM"),
    Case("lpips_weights missing", lambda f: loss(lpips_weight=0.3, lpips_weights=f["dir"] / "alex.pth"),
         FileNotFoundError, r"alex\.pth does not exist"),
    Case("lpips_weights text file", lambda f: loss(lpips_weight=0.3, lpips_weights=f["text"]), ValueError,
         r"LPIPS: weights file .*notes\.txt cannot be read"),
    Case("lpips_weights of another network", lambda f: loss(lpips_weight=0.3, lpips_weights=f["unet"]), ValueError,
         r"unet\.pt is not a torchvision alex state dict"),
    Case("preset unknown", lambda f: DejaVuLoss.from_preset("pascal", 4), ValueError, "unknown preset 'pascal'"),
    Case("preset nyud without adapter", lambda f: DejaVuLoss.from_preset("nyud", 4), ValueError, "needs.*adapter"),
    # ------------------------------------------------------------------ DejaVuLoss call
    Case("loss NaN image", lambda f: call(image=IMG.masked_fill(IMG > 0.9, float("nan"))), ValueError,
         "image contains NaN"),
    Case("loss 8-bit image", lambda f: call(image=IMG * 255), ValueError, r"value_range=\(0, 255\)"),
    Case("loss NaN prediction", lambda f: call(pred=torch.full((2, 4, 16, 16), float("nan"))), ValueError,
         "prediction contains NaN"),
    Case("loss empty batch", lambda f: call(image=IMG[:0], pred=torch.rand(0, 4, 16, 16)), ValueError, "empty"),
    Case("loss batch mismatch", lambda f: call(pred=torch.rand(3, 4, 16, 16)), ValueError, "batch"),
    Case("loss prediction rank 3", lambda f: call(pred=torch.rand(2, 16, 16)), ValueError, r"\(2, 16, 16\)"),
    Case("loss prediction channels", lambda f: call(pred=torch.rand(2, 5, 16, 16)), ValueError,
         "pred_channels=4 channels"),
    Case("reliance target_condition",
         lambda f: loss().reliance(IMG, torch.rand(2, 4, 16, 16), torch.rand(2, 3, 16, 16)),
         ValueError, "target_condition must have shape"),
    # ------------------------------------------------------------------ tasks and metrics
    Case("segmentation num_classes 1", lambda f: Segmentation(1), ValueError, "num_classes must be >= 2, got 1"),
    Case("segmentation label 7 of 6", lambda f: Segmentation(6).loss(torch.rand(2, 6, 16, 16), labels(7)), ValueError,
         r"label 7 is outside 0\.\.5"),
    Case("segmentation label -1", lambda f: Segmentation(6).compute_metrics(torch.rand(2, 6, 16, 16), labels(-1)),
         ValueError, "label -1 is outside"),
    Case("segmentation float labels", lambda f: Segmentation(6).loss(torch.rand(2, 6, 16, 16), labels(1).float()),
         TypeError, "integer class ids.*float32"),
    Case("segmentation prediction channels", lambda f: Segmentation(6).loss(torch.rand(2, 5, 16, 16), labels(1)),
         ValueError, r"\(B, 6, H, W\), got \(2, 5, 16, 16\)"),
    Case("depth loss l2", lambda f: Depth("l2"), ValueError, "'l2'"),
    Case("depth targets all invalid", lambda f: Depth().loss(torch.rand(2, 1, 8, 8), torch.zeros(2, 1, 8, 8)),
         ValueError, "Depth: no valid target pixel"),
    Case("depth targets beyond max_depth", lambda f: Depth(max_depth=80).loss(torch.rand(2, 1, 8, 8),
                                                                               torch.full((2, 1, 8, 8), 90.0)),
         ValueError, "max_depth=80"),
    Case("depth metrics all invalid", lambda f: Depth().compute_metrics(torch.rand(2, 1, 8, 8),
                                                                        torch.full((2, 1, 8, 8), float("nan"))),
         ValueError, "DepthMetrics: no valid target pixel"),
    Case("normals targets all invalid", lambda f: Normals().loss(torch.rand(2, 3, 8, 8), torch.zeros(2, 3, 8, 8)),
         ValueError, "Normals: no valid target normal"),
    Case("normals metrics all invalid", lambda f: Normals().compute_metrics(torch.rand(2, 3, 8, 8),
                                                                            torch.zeros(2, 3, 8, 8)),
         ValueError, "AngleMetrics: no valid target normal"),
    Case("multitask empty", lambda f: MultiTask([]), ValueError, "tasks must not be empty"),
    Case("multitask weights", lambda f: MultiTask([Depth(), Normals()], [1.0]), ValueError, r"one weight per task"),
    Case("multitask target a tensor",
         lambda f: MultiTask([Depth()]).loss(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)),
         TypeError, "batch dict"),
    Case("task batch without its entry", lambda f: Depth().loss(torch.rand(2, 1, 8, 8), {"semantic": labels(1)}),
         KeyError, "no 'depth' entry"),
    Case("task unknown", lambda f: create_task("edges"), ValueError, "unknown task 'edges'"),
    # ------------------------------------------------------------------ models and weight files
    Case("model unknown", lambda f: create_model("resnet", 6), ValueError, "unknown model 'resnet'"),
    Case("model name not a string", lambda f: create_model(None, 6), TypeError, "name must be a string"),
    Case("model out_channels text", lambda f: create_model("unet", "6"), TypeError, "out_channels must be an int.*'6'"),
    Case("model out_channels 0", lambda f: create_model("unet", 0), ValueError, "out_channels must be >= 1, got 0"),
    Case("model out_channels empty list", lambda f: create_model("segnet_mtl", []), ValueError, "empty list"),
    Case("model head of 2.5 channels", lambda f: create_model("segnet_mtl", [6, 2.5]), TypeError, r"out_channels\[1\]"),
    Case("model in_channels float", lambda f: create_model("unet", 6, in_channels=3.0), TypeError, "in_channels"),
    Case("weights missing", lambda f: load_weights(create_model("unet", 6), f["dir"] / "none.pt"), FileNotFoundError,
         r"none\.pt does not exist"),
    Case("weights truncated", lambda f: load_weights(create_model("unet", 6, width=4), f["truncated"]), ValueError,
         r"cut\.pt cannot be read.*truncated"),
    Case("weights a pickled object", lambda f: read_tensors(f["pickle"]), ValueError, r"object\.pt cannot be read"),
    Case("weights a list", lambda f: read_tensors(f["list"]), ValueError, r"list\.pt holds list"),
    Case("weights of another network", lambda f: load_weights(create_model("unet", 6, width=8), f["unet"]),
         ValueError, r"unet\.pt does not match the model"),
    Case("checkpoint is an export", lambda f: read_checkpoint(f["crm"]), ValueError,
         r"crm4\.safetensors is an exported network.*--model\.pretrained"),
    Case("checkpoint is a state dict", lambda f: read_checkpoint(f["unet"]), ValueError,
         r"unet\.pt is not a Lightning training checkpoint"),
    # ------------------------------------------------------------------ data
    Case("camvid root missing", lambda f: CamVid(f["dir"] / "camvid"), FileNotFoundError, r"camvid does not exist"),
    Case("camvid split", lambda f: CamVid(f["camvid"], "training"), ValueError, "split.*'training'"),
    Case("camvid colour label", lambda f: CamVid(f["camvid"], "val")[0], ValueError,
         r"label file .*valannot/a\.png is a RGB image"),
    Case("camvid corrupt image", lambda f: CamVid(f["camvid"], "val")[1], ValueError,
         r"CamVid: cannot read image file .*val/b\.png"),
    Case("camvid label value", lambda f: CamVid(f["camvid"], "train")[0], ValueError, r"a\.png has value 40"),
    Case("camvid image without label", lambda f: CamVid(f["camvid"], "test"), FileNotFoundError,
         r"test/c\.PNG has no label file"),
    Case("synthetic size", lambda f: SyntheticScenes(4, size=(0, 8)), ValueError, r"size.*\(0, 8\)"),
    Case("synthetic index", lambda f: SyntheticScenes(4, size=(8, 8))[4], IndexError, "index 4 out of range"),
    Case("data unknown dataset", lambda f: DenseDataModule("pascal"), ValueError, "'pascal'"),
    Case("data camvid without root", lambda f: DenseDataModule("camvid"), ValueError, "--data.root"),
    Case("data label_fraction 0", lambda f: DenseDataModule("synthetic", label_fraction=0), ValueError,
         "label_fraction.*0"),
    # ------------------------------------------------------------------ command line
    Case("test without weights", lambda f: cli(f, "test"), SystemExit, "dejavu test: no weights"),
    Case("resume without checkpoint",
         lambda f: cli(f, "fit", "--run_dir", str(f["dir"] / "new"), "--ckpt_path", "last"),
         SystemExit, "nothing to resume"),
    Case("run_dir a file", lambda f: cli(f, "fit", "--run_dir", str(f["text"])), SystemExit, "is a file, not a folder"),
    Case("ckpt_path an export", lambda f: cli(f, "test", "--ckpt_path", str(f["run"] / "model.safetensors")),
         SystemExit, r"model\.safetensors is an exported network"),
    Case("ckpt_path truncated", lambda f: cli(f, "test", "--ckpt_path", str(f["truncated"])), SystemExit,
         r"--ckpt_path: checkpoint .*cut\.pt cannot be read"),
    Case("ckpt_path missing", lambda f: cli(f, "test", "--ckpt_path", str(f["dir"] / "gone.ckpt")), SystemExit,
         r"gone\.ckpt does not exist"),
    Case("checkpoint of another task",
         lambda f: cli(f, "test", "--ckpt_path", str(f["run"] / "checkpoints/best.ckpt"),
                       "--model.task", "{name: depth}"),
         SystemExit, "model.task.name: checkpoint 'segmentation', config 'depth'"),
    Case("checkpoint of another class count",
         lambda f: cli(f, "test", "--ckpt_path", str(f["run"] / "checkpoints/last.ckpt"),
                       "--model.task", "{name: segmentation, num_classes: 8}"),
         SystemExit, "model.task.num_classes: checkpoint 6, config 8"),
    Case("checkpoint with a flipped byte", lambda f: read_checkpoint(f["flipped_ckpt"]), ValueError,
         r"checkpoint .*flipped\.ckpt is corrupted: record archive/.* does not match its CRC-32"),
    Case("ckpt_path with a flipped byte", lambda f: cli(f, "test", "--ckpt_path", str(f["flipped_ckpt"])),
         SystemExit, r"flipped\.ckpt is corrupted"),
    Case("exported weights with a flipped byte",
         lambda f: load_weights(create_model("unet", 6, width=4, depth=2), f["flipped_st"]), ValueError,
         r"flipped\.safetensors is corrupted: its data does not match the SHA-256 written with it"),
    Case("exported weights with a damaged header",
         lambda f: load_weights(create_model("unet", 6, width=4, depth=2), f["bad_header"]), ValueError,
         r"header\.safetensors is corrupted: its header is not readable"),
    Case("fit tiny images one at a time",
         lambda f: cli(f, "fit", "--run_dir", str(f["dir"] / "tiny"), "--data.size", "[4, 4]",
                       "--data.batch_size", "1"),
         ValueError, r"batch of \(1, 3, 4, 4\) leaves a batch norm layer one value per channel.*--data\.size.*"
                     r"--data\.batch_size"),
    Case("config not YAML", lambda f: cli(f, "fit", "--config", str(f["bad_yaml"])), SystemExit,
         r"config .*bad\.yaml is not valid YAML"),
    Case("config names a missing base", lambda f: cli(f, "fit", "--config", str(f["orphan"])), SystemExit,
         r"names base 'gone\.yaml', but .*gone\.yaml does not exist"),
    Case("--base on the command line", lambda f: cli(f, "fit", "--base", str(f["config"])), SystemExit,
         r"--base is a config file's key"),
    Case("fit run_dir under a file", lambda f: cli(f, "fit", "--run_dir", str(f["text"] / "run")), SystemExit,
         r"notes\.txt, which is a file, not a folder"),
    Case("predict batch size 0", lambda f: predict(f["run"], str(f["images"]), f["dir"] / "p", batch_size=0),
         ValueError, r"--batch-size must be at least 1, got 0"),
    Case("predict out a file", lambda f: predict(f["run"], str(f["images"]), f["text"]), ValueError,
         r"--out .*notes\.txt is a file"),
    Case("export over the run's weights",
         lambda f: export(f["run"], "exported-program", f["run"] / "model.safetensors", size=(32, 32)), ValueError,
         r"would replace the run's own model\.safetensors"),
    Case("export size 1 1", lambda f: export(f["run"], "exported-program", f["dir"] / "m.pt2", size=(1, 1)),
         ValueError, r"--size must be at least 2 2"),
    Case("resume a segmentation run as depth",
         lambda f: cli(f, "fit", "--run_dir", str(f["run"]), "--ckpt_path", "last", "--model.task", "{name: depth}",
                       "--trainer.max_epochs", "2"),
         SystemExit, "model.task.name: checkpoint 'segmentation', config 'depth'"),
    # ------------------------------------------------------------------ round three: each class, not one example
    Case("a learning rate given as a string",
         lambda f: DejaVuModule({"name": "unet", "width": 4}, {"name": "segmentation", "num_classes": 3},
                                optim={"lr": "0.01"}),
         ArgumentTypeError, r"model\.optim\.lr must be float, got str '0\.01'"),
    Case("a CRM learning rate given as a list",
         lambda f: DejaVuModule({"name": "unet", "width": 4}, {"name": "segmentation", "num_classes": 3},
                                dejavu={"lpips_weight": 0}, optim={"crm_lr": [0.001]}), ArgumentTypeError,
         r"model\.optim\.crm_lr"),
    Case("a task setting of the wrong type", lambda f: cli(f, "fit", "--model.task", "{name: depth, max_depth: far}"),
         ValueError, r"model\.task: .*Depth\.max_depth must be float \| None, got str 'far'"),
    Case("a task's ignore index of the wrong type",
         lambda f: cli(f, "fit", "--model.task", "{name: segmentation, ignore_index: x}"), ValueError,
         r"model\.task: .*Segmentation\.ignore_index must be int"),
    Case("a class count that is not a number",
         lambda f: cli(f, "fit", "--model.task", "{name: segmentation, num_classes: six}"), ValueError,
         r"model\.task: num_classes must be an int, got 'six'"),
    Case("create_task with a spec for a name", lambda f: create_task({"name": "depth"}), TypeError,
         r"create_task: name must be a task's name"),
    Case("a negative max_epochs", lambda f: cli(f, "fit", "--trainer.max_epochs", "-3", "--run_dir",
                                                str(f["dir"] / "neg")),
         MisconfigurationException, r"`max_epochs` must be a non-negative integer"),
    Case("a decoder of 0 channels",
         lambda f: create_model("smp:FPN", 6, encoder="resnet18", decoder_pyramid_channels=0), ValueError,
         r"decoder_pyramid_channels must be >= 1, got 0"),
    Case("decoder channels with a 0", lambda f: create_model("smp:Unet", 6, decoder_channels=[64, 32, 0, 8, 4]),
         ValueError, r"decoder_channels\[2\] must be >= 1, got 0"),
    Case("a class count of 0 for a network", lambda f: create_model("ocr", 0, encoder="resnet18"), ValueError,
         r"out_channels must be >= 1, got 0"),
    Case("a run folder's lock is a folder", lambda f: cli(f, "fit", "--run_dir", str(f["locked"])), SystemExit,
         r"--run_dir .*locked: cannot take its lock file .*\.lock \(a folder\)"),
    Case("predict on a device this machine lacks",
         lambda f: predict(f["run"], str(f["images"]), f["dir"] / "p", device="cuda:7"), ValueError,
         r"--device cuda:7: this machine has \d+ CUDA device"),
    Case("predict on a device that is not one", lambda f: predict(f["run"], str(f["images"]), f["dir"] / "p",
                                                                   device="gpu0"), ValueError,
         r"--device 'gpu0' is not a device"),
    Case("an evaluation image too small for a network's group norm", lambda f: input_too_small(), ValueError,
         r"input of \(1, 3, 1, 1\) is too small for the network \(.*more than 1 value per channel.*"
         r"--data\.eval_size"),
    Case("data lengths for a dataset that has its own",
         lambda f: DenseDataModule("camvid", root=str(f["camvid"]), train_length=16), ValueError,
         r"data\.train_length and data\.val_length count synthetic scenes"),
    Case("a truncated model.json", lambda f: predict(f["cut_run"], str(f["images"]), f["dir"] / "p"), ValueError,
         r"cut/model\.json is not readable JSON"),
    Case("a model.json without its network", lambda f: predict(f["bare_run"], str(f["images"]), f["dir"] / "p"),
         ValueError, r"bare/model\.json lacks its 'network' entry"),
    Case("a write that fails names the file asked for, not its temporary",
         lambda f: atomic_write(f["dir"] / "asked.onnx", no_space), OSError, r"No space left.*'[^']*asked\.onnx'"),
]


def no_space(tmp: Path) -> None:
    raise OSError(28, "No space left on device", str(tmp))


def input_too_small() -> None:
    """A network with a group norm of one channel per group, which needs two values per channel even in
    evaluation, evaluated on a 1x1 image."""
    if "group_norm_probe" not in MODELS:
        register_model("group_norm_probe")(lambda out_channels: torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.GroupNorm(4, 4), torch.nn.Conv2d(4, out_channels, 1)))
    module = DejaVuModule({"name": "group_norm_probe"}, {"name": "segmentation", "num_classes": 3}).eval()
    module.evaluate(torch.rand(1, 3, 1, 1))


def cli(f: dict[str, Path], command: str, *args: str) -> None:
    run_dir = ["--run_dir", str(f["dir"] / "eval")] if "--run_dir" not in args else []
    DejaVuCLI(args=[command, "--config", str(f["config"]), *run_dir, *args])


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    f = {"dir": d, "text": d / "notes.txt", "truncated": d / "cut.pt", "pickle": d / "object.pt",
         "list": d / "list.pt", "unet": d / "unet.pt", "crm": d / "crm4.safetensors", "camvid": d / "cv",
         "config": d / "c.yaml", "run": d / "run"}
    f["text"].write_text("not weights")
    torch.save(create_model("unet", 6, width=4).state_dict(), f["unet"])
    f["truncated"].write_bytes(f["unet"].read_bytes()[:500])
    f["pickle"].write_bytes(pickle.dumps(Path("x")))
    torch.save([torch.ones(1)], f["list"])
    save_file(ForwardCRM(4).state_dict(), str(f["crm"]))
    write_bad_camvid(f["camvid"])
    config = {"model": {"network": {"name": "unet", "width": 4, "depth": 2},
                        "task": {"name": "segmentation", "num_classes": 6}},
              "data": {"dataset": "synthetic", "size": [32, 32], "batch_size": 4, "train_length": 8, "val_length": 4},
              "trainer": {"max_epochs": 1, "enable_progress_bar": False, "enable_model_summary": False},
              "figure_images": 1}
    f["config"].write_text(yaml.safe_dump(config))
    DejaVuCLI(args=["fit", "--config", str(f["config"]), "--run_dir", str(f["run"])])
    f.update(flipped_ckpt=d / "flipped.ckpt", flipped_st=d / "flipped.safetensors", bad_header=d / "header.safetensors")
    f["flipped_ckpt"].write_bytes(flipped_in_largest_record(f["run"] / "checkpoints" / "best.ckpt"))
    weights = bytearray((f["run"] / "model.safetensors").read_bytes())
    weights[-5] ^= 0x10
    f["flipped_st"].write_bytes(weights)
    weights[9:12] = b"!!!"
    f["bad_header"].write_bytes(weights)
    f.update(bad_yaml=d / "bad.yaml", orphan=d / "orphan.yaml", images=d / "images")
    f["bad_yaml"].write_text("model: {network: [unclosed\n")
    f["orphan"].write_text("base: gone.yaml\n")
    f["images"].mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(f["images"] / "one.png")
    f.update(locked=d / "locked", cut_run=d / "cut", bare_run=d / "bare")
    (f["locked"] / ".lock").mkdir(parents=True)
    for name, text in (("cut_run", (f["run"] / "model.json").read_text()[:40]), ("bare_run", '{"task": {}}')):
        shutil.copytree(f["run"], f[name])
        (f[name] / "model.json").write_text(text)
    return f


def flipped_in_largest_record(path: Path) -> bytes:
    """A zip archive's bytes with one bit flipped inside its largest record's data."""
    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    blob = bytearray(path.read_bytes())
    lengths = blob[info.header_offset + 26:info.header_offset + 30]  # the local header's name and extra lengths
    start = info.header_offset + 30 + int.from_bytes(lengths[:2], "little") + int.from_bytes(lengths[2:], "little")
    blob[start + info.file_size // 2] ^= 0x01
    return bytes(blob)


def write_bad_camvid(root: Path) -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    for split in ("train", "val", "test"):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
    Image.fromarray(rgb).save(root / "train" / "a.png")
    Image.fromarray(np.full((8, 8), 40, np.uint8)).save(root / "trainannot" / "a.png")
    Image.fromarray(rgb).save(root / "val" / "a.png")
    Image.fromarray(rgb).save(root / "valannot" / "a.png")  # a colour label
    (root / "val" / "b.png").write_bytes(b"not a png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "valannot" / "b.png")
    Image.fromarray(rgb).save(root / "test" / "c.PNG")


def test_the_table_is_large_enough():
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_named(case, files):
    with pytest.raises(case.exc, match=case.match):
        case.fn(files)


def test_a_command_line_user_is_given_the_option_not_the_python_argument(tmp_path):
    """Offline, the LPIPS error advised `lpips_weight=0`, a Python argument; from a config or the command
    line the option is `--model.dejavu.lpips_weight 0`."""
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"network": {"name": "unet", "width": 4, "depth": 2},
                  "task": {"name": "segmentation", "num_classes": 6},
                  "dejavu": {"redaction": "checkerboard", "lpips_weight": 0.3}},
        "data": {"dataset": "synthetic", "size": [32, 32]}}))
    with pytest.raises(FileNotFoundError) as e:
        DejaVuCLI(args=["--config", str(config), "--run_dir", str(tmp_path / "r"), "--offline", "true"], run=False)
    message = str(e.value)
    assert "--model.dejavu.lpips_weight 0" in message and "--model.dejavu.lpips_weights PATH" in message
    assert "lpips_weight=0" not in message and "offline=True" in message
