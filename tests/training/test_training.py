import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers import CONFIGS, ROOT, TESTS
from safetensors.torch import load_file

from dejavu.cli.compare import main as compare
from dejavu.cli.compare import paired_summary
from dejavu.cli.demo import main as demo
from dejavu.data import CAMVID_CLASSES
from dejavu.models import create_model
from dejavu.training.callbacks import write_json
from dejavu.training.lightning_cli import (
    DejaVuCLI,
    _flat,
    compose_config,
    expand_bases,
    fill_class_counts,
    packaged_config,
    save_config,
)
from dejavu.training.lightning_cli import test_run as evaluate_run  # not a test: pytest would collect the name

TINY = {
    "seed_everything": 0,
    "model": {"network": {"name": "unet", "width": 4, "depth": 2},
              "task": {"name": "segmentation", "num_classes": 6}, "optim": {"name": "adamw", "lr": 0.003}},
    "data": {"dataset": "synthetic", "size": [32, 32], "batch_size": 4, "train_length": 16, "val_length": 8},
    "trainer": {"max_epochs": 1, "enable_progress_bar": False, "enable_model_summary": False},
    "figure_images": 2,
}
DEJAVU = {"redaction": {"name": "checkerboard", "block_size": 8}, "regenerator": "recursive",
          "regenerator_kwargs": {"steps": 3, "width": 8}, "lpips_weight": 0.0}


def write_config(path: Path, dejavu: bool = True, **changes) -> Path:
    cfg = json.loads(json.dumps(TINY))
    if dejavu:
        cfg["model"]["dejavu"] = DEJAVU
    if "data__dataset" in changes:  # the scene counts are the synthetic dataset's; another has its own
        del cfg["data"]["train_length"], cfg["data"]["val_length"]
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = cfg
        for p in parents:
            node = node[p]
        node[leaf] = value
    path.write_text(yaml.safe_dump(cfg))
    return path


def dejavu(*args: str) -> None:
    DejaVuCLI(args=list(args))


def test_fit_writes_a_complete_run_folder(tmp_path):
    run = tmp_path / "run"
    dejavu("fit", "--config", str(write_config(tmp_path / "c.yaml")), "--run_dir", str(run))
    for name in ("config.yaml", "checkpoints/best.ckpt", "checkpoints/last.ckpt", "metrics.json",
                 "model.safetensors", "model.pt", "model.json", "figure.png"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["dejavu"] and metrics["steps"] == 4 and 0 <= metrics["val"]["val/mIoU"] <= 1
    # the reliance measure: regeneration from the prediction, a blank and the ground truth's condition
    val = metrics["val"]
    assert all(val[f"val/regen_mse{k}"] > 0 for k in ("", "_blank", "_gt"))
    assert val["val/reliance"] == pytest.approx(1 - val["val/regen_mse"] / val["val/regen_mse_blank"], abs=1e-6)
    # six columns (input, truth, prediction, redacted, regenerated, regenerated from blank) by two rows
    from PIL import Image

    width, height = Image.open(run / "figure.png").size
    assert width / height > 2.6
    # the inference model is the base network alone: no CRM, loadable safely, and it runs
    state = torch.load(run / "model.pt", weights_only=True)
    net = create_model("unet", 6, width=4, depth=2)
    assert set(state) == set(net.state_dict()) == set(load_file(str(run / "model.safetensors")))
    net.load_state_dict(state)
    assert net(torch.rand(1, 3, 32, 32)).shape == (1, 6, 32, 32)
    # the CRM is in the training checkpoint, though
    ckpt = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    assert any(k.startswith("dejavu_loss.regenerator.") for k in ckpt["state_dict"])
    assert not any(".lpips." in k for k in ckpt["state_dict"])


class Resolved(DejaVuCLI):
    """A config as `dejavu fit` resolves it (bases, class counts from the dataset), nothing built."""

    def instantiate_classes(self) -> None:
        pass


def resolved_keys(config) -> dict:
    return {k: v for k, v in _flat(config.as_dict()).items() if k not in ("config", "base")}  # how it was composed


SHIPPED = sorted(str(p.relative_to(packaged_config(""))) for p in packaged_config("").rglob("*.yaml")
                 if p.name != "base.yaml")  # what other configs share, not a run


@pytest.mark.parametrize("name", SHIPPED)
def test_a_saved_config_resolves_to_the_same_config(name, tmp_path):
    """A run's config.yaml dropped every null (data.size: null read back as 64x64): each shipped config,
    composed, saved as a run saves it and read back, gives every resolved key its value, nulls included."""
    first = Resolved(args=["--config", str(packaged_config(name)), "--run_dir", str(tmp_path)], run=False)
    save_config(first.parser, first.config, tmp_path / "config.yaml")
    again = Resolved(args=["--config", str(tmp_path / "config.yaml")], run=False)
    assert resolved_keys(again.config) == resolved_keys(first.config)


def test_evaluating_through_the_saved_config_gives_the_runs_metrics(tmp_path):
    """`dejavu test --config RUN/config.yaml` of the run's last checkpoint on the validation split scores
    what metrics.json says. It scored resized images when config.yaml lost `data.size: null` (native size)."""
    from PIL import Image

    from dejavu.data import SyntheticScenes

    scenes = SyntheticScenes(6, size=(24, 40))
    for split, indices in (("train", range(4)), ("val", range(4, 6))):
        for i in indices:
            for folder in ("images", "labels"):
                (tmp_path / "data" / folder / split).mkdir(parents=True, exist_ok=True)
            item = scenes[i]
            Image.fromarray((item["image"].permute(1, 2, 0).numpy() * 255).astype("uint8")).save(
                tmp_path / "data" / "images" / split / f"{i}.png")
            labels = tmp_path / "data" / "labels" / split
            Image.fromarray(item["semantic"].numpy().astype("uint8")).save(labels / f"{i}.png")
    dataset = {"class_path": "dejavu.data.ImageFolder", "init_args": {"root": str(tmp_path / "data"), "num_classes": 6}}
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", dejavu=False, data__dataset=dataset, data__size=None, data__batch_size=2)
    dejavu("fit", "--config", str(cfg), "--run_dir", str(run))
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["size"] is None
    dejavu("test", "--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
           "--data.split", "val")
    tested = json.loads((run / "test_metrics_val.json").read_text())["metrics"]
    val = json.loads((run / "metrics.json").read_text())["val"]
    common = set(val) & set(tested)
    assert {"val/mIoU", "val/pixel_acc"} <= common
    assert {k: tested[k] for k in common} == pytest.approx({k: val[k] for k in common}, abs=1e-6)


def test_a_run_reports_itself(tmp_path, capsys):
    """fit ends on a summary of the run. The bar covers the whole run ("epoch 3/3", 12 of 12 batches, not
    one epoch), and a log that is not a terminal gets plain lines."""
    cfg = write_config(tmp_path / "c.yaml", trainer__max_epochs=3, trainer__enable_progress_bar=True)
    bar = ["--trainer.callbacks+=dejavu.training.progress.RunProgressBar", "--trainer.callbacks.interactive=true"]
    dejavu("fit", "--config", str(cfg), "--run_dir", str(tmp_path / "bar"), *bar)
    out = capsys.readouterr().out
    assert re.search(r"epoch 3/3: 100%\|.*\| 12/12 ", out.replace("\r", "\n"))
    summary = out[out.index("dejavu fit: done in"):]
    assert str(tmp_path / "bar") in summary and "3/3 epochs, 12 steps" in summary
    metrics = json.loads((tmp_path / "bar" / "metrics.json").read_text())
    last, best = metrics["last"]["val"]["val/mIoU"], metrics["best"]["val"]["val/mIoU"]
    assert f"val/mIoU: last {last:.4f} (epoch 3), best {best:.4f} (epoch {metrics['best']['epoch']})" in summary
    assert "val/reliance: " in summary and "wrote, from the last epoch's weights: model.safetensors" in summary
    summary_metrics = {k: v for k, v in metrics["val"].items() if "/IoU/" not in k}
    assert metrics["weights"] == "last" and summary_metrics == metrics["last"]["val"]
    # each class's IoU beside mIoU, as the confusion matrix gives it
    iou = {k.removeprefix("val/IoU/"): v for k, v in metrics["val"].items() if "/IoU/" in k}
    assert iou == metrics["last"]["iou"]["val/IoU"] and len(iou) == 6
    dejavu("fit", "--config", str(cfg), "--run_dir", str(tmp_path / "log"))  # captured: not a terminal
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [line.split("  ")[:2] for line in lines] == [["epoch 1/3", "batch 4/12 (33%)"],
                                                        ["epoch 2/3", "batch 8/12 (67%)"],
                                                        ["epoch 3/3", "batch 12/12 (100%)"]]
    assert "\r" not in "".join(lines) and all(" eta " in line for line in lines)


def test_a_run_logs_what_practitioners_look_for(tmp_path):
    """Per-class IoU and a confusion matrix (metrics.json, confusion.png), the learning rate, the figure in
    TensorBoard at each validation; no hp_metric of -1, no regen_lpips/regen_ssim for terms that are off."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", trainer__max_epochs=2, trainer__log_every_n_steps=1)
    dejavu("fit", "--config", str(cfg), "--run_dir", str(run))
    metrics = json.loads((run / "metrics.json").read_text())
    iou, table = metrics["last"]["iou"]["val/IoU"], metrics["last"]["confusion"]["val/confusion"]
    assert table["classes"] == ["background", "floor", "wall", "sphere", "box", "cylinder"] == sorted(iou, key=table[
        "classes"].index)
    confusion = table["matrix"]
    assert len(confusion) == 6 and all(len(row) == 6 for row in confusion) and sum(map(sum, confusion)) > 0
    present = [v for v in iou.values() if v is not None]
    assert sum(present) / len(present) == pytest.approx(metrics["val"]["val/mIoU"], abs=1e-5)
    assert (run / "confusion.png").is_file()
    events = EventAccumulator(str(next((run / "tensorboard").glob("events.*"))))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert any(t.startswith("lr-") for t in scalars) and "hp_metric" not in scalars
    assert "train/regen_mse" in scalars and not {"train/regen_lpips", "train/regen_ssim"} & set(scalars)
    assert len(events.Images("val/figure")) == 2


@pytest.mark.slow
def test_fit_is_quiet_by_default(tmp_path):
    """No Lightning logger advertisement, no FLOPs column of zeros, no known deprecation warnings from
    Lightning or torchdata, no "`Trainer.fit` stopped" (the summary says it): in the command itself."""
    cfg = write_config(tmp_path / "c.yaml", trainer__enable_model_summary=True, data__num_workers=1)
    command = [sys.executable, "-m", "dejavu", "fit", "--config", str(cfg), "--run_dir", str(tmp_path / "r")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert "Trainable params" in output and "dejavu fit: done in" in output
    for noise in ("Tip", "litlogger", "FLOPs", "Total Flops", "Trainer.fit` stopped", "set_vital", "LeafSpec",
                  "Warning"):
        assert noise not in output, noise


def test_files_follow_the_umask_and_test_asks_before_replacing_results(tmp_path):
    """Checkpoints follow the umask, and `dejavu test`, like fit, asks before replacing its results."""
    run = tmp_path / "run"
    dejavu("fit", "--config", str(write_config(tmp_path / "c.yaml", dejavu=False)), "--run_dir", str(run))
    umask = os.umask(0)
    os.umask(umask)
    for name in ("checkpoints/last.ckpt", "checkpoints/best.ckpt", "model.safetensors", "model.pt", "metrics.json"):
        assert (run / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    test = ["test", "--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints" / "last.ckpt")]
    dejavu(*test)
    before = (run / "test_metrics_val.json").read_bytes()
    with pytest.raises(SystemExit, match=r"test_metrics_val\.json exists; pass --overwrite true"):
        dejavu(*test)
    assert (run / "test_metrics_val.json").read_bytes() == before
    dejavu(*test, "--overwrite", "true")


def test_the_exported_weights_are_the_users_choice(tmp_path):
    """The run exports what --export_weights says (last by default): model.safetensors, metrics.json's val,
    predict and export use that epoch, and test_run evaluates the same checkpoint."""
    cfg = write_config(tmp_path / "c.yaml", dejavu=False, trainer__max_epochs=3)
    run = tmp_path / "run"
    dejavu("fit", "--config", str(cfg), "--run_dir", str(run), "--export_weights", "best",
           "--trainer.callbacks+=helpers.WorseningMetric")  # best.ckpt stays at epoch 1
    metrics = json.loads((run / "metrics.json").read_text())
    best = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    assert best["global_step"] == 4 and metrics["weights"] == "best"
    exported = load_file(str(run / "model.safetensors"))
    assert all(torch.equal(v, best["state_dict"][f"net.{k}"]) for k, v in exported.items())
    assert {k: v for k, v in metrics["val"].items() if "/IoU/" not in k} == metrics["best"]["val"]
    assert metrics["best"]["epoch"] == 1
    tested = evaluate_run(run, "val")["metrics"]
    assert tested["val/mIoU"] == pytest.approx(metrics["val"]["val/mIoU"], abs=1e-6)


def test_best_weights_are_never_the_last_ones_labelled_best(tmp_path, capsys):
    """With validation off there is no best epoch: --export_weights best is refused before training. Where no
    best checkpoint was written (the monitored metric never measured), the last weights are labelled last."""
    cfg = write_config(tmp_path / "c.yaml", dejavu=False)
    for off in (("--trainer.limit_val_batches", "0"), ("--trainer.check_val_every_n_epoch", "5")):
        with pytest.raises(ValueError, match="--export_weights best picks the epoch of the best validation score"):
            dejavu("fit", "--config", str(cfg), "--run_dir", str(tmp_path / "off"), "--export_weights", "best", *off,
                   "--overwrite", "true")
    run = tmp_path / "run"
    dejavu("fit", "--config", str(cfg), "--run_dir", str(run), "--export_weights", "best",
           "--trainer.callbacks+=helpers.NoBestCheckpoint")
    assert json.loads((run / "metrics.json").read_text())["weights"] == "last"
    assert "so the last weights are exported, and labelled so" in capsys.readouterr().out


def test_shipped_configs_are_found_from_any_folder(tmp_path, monkeypatch, capsys):
    """`--config camvid/baseline.yaml` (or `configs/...`, as the README writes it) resolves the packaged
    config where no such local file exists; `dejavu configs` lists them."""
    from dejavu.cli import main

    monkeypatch.chdir(tmp_path)
    for name in ("synthetic/segmentation_dejavu.yaml", "configs/synthetic/segmentation_dejavu.yaml"):
        cli = Resolved(args=["--config", name, "--run_dir", str(tmp_path / "r")], run=False)
        assert cli.config["model"]["dejavu"] is not None and cli.config["data"]["dataset"] == "synthetic"
    main(["configs"])
    listed = capsys.readouterr().out
    assert "camvid/baseline.yaml" in listed and "synthetic/segmentation_dejavu.yaml" in listed
    with pytest.raises(SystemExit):  # a name that is neither a file nor packaged: the parser names it
        Resolved(args=["--config", "camvid/nothing.yaml"], run=False)


def test_docs_point_inside_the_project():
    """The configs' comments and the README pointed at ../shared/... and PAPER_NOTES.md, outside the
    project, and at internal issue numbers."""
    root = ROOT
    docs = sorted((root / "docs").glob("*.md"))
    for path in [root / "README.md", *docs, *sorted(packaged_config("").rglob("*.yaml"))]:
        text = path.read_text()
        for pattern in (r"\.\./shared", r"PAPER_NOTES", r"\bissues? #?\d+"):
            assert not re.search(pattern, text, re.IGNORECASE), f"{path.name}: {pattern}"


def test_existing_run_folder_is_never_overwritten_silently(tmp_path):
    cfg, run = str(write_config(tmp_path / "c.yaml", dejavu=False)), str(tmp_path / "run")
    dejavu("fit", "--config", cfg, "--run_dir", run)
    before = (tmp_path / "run" / "metrics.json").read_bytes()
    with pytest.raises(SystemExit, match="already exists"):
        dejavu("fit", "--config", cfg, "--run_dir", run)
    assert (tmp_path / "run" / "metrics.json").read_bytes() == before
    dejavu("fit", "--config", cfg, "--run_dir", run, "--overwrite", "true")


def test_interrupt_then_resume_then_test(tmp_path):
    cfg, run = str(write_config(tmp_path / "c.yaml", trainer__max_epochs=3)), tmp_path / "run"
    # Ctrl-C in the second epoch: the checkpoint of the first epoch stays intact
    with pytest.raises(SystemExit):  # Lightning shuts down gracefully, then exits with status 1
        dejavu("fit", "--config", cfg, "--run_dir", str(run), "--trainer.callbacks+=helpers.InterruptAt",
               "--trainer.callbacks.step=6")
    assert not (run / "metrics.json").exists()
    ckpt = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4 and ckpt["epoch"] == 0
    assert not list((run / "checkpoints").glob(".*tmp"))
    dejavu("fit", "--config", cfg, "--run_dir", str(run), "--ckpt_path", "last")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 12 and metrics["epochs"] == 3
    dejavu("test", "--config", cfg, "--run_dir", str(run), "--ckpt_path", str(run / "checkpoints/best.ckpt"),
           "--data.split", "test")
    dejavu("test", "--config", cfg, "--run_dir", str(run), "--ckpt_path", str(run / "checkpoints/best.ckpt"),
           "--model.test_noise", "0.3")
    clean = json.loads((run / "test_metrics_test.json").read_text())
    noisy = json.loads((run / "test_metrics_val_noise0.3.json").read_text())
    assert 0 <= clean["metrics"]["test/mIoU"] <= 1 and noisy["noise"] == 0.3
    assert set(noisy["metrics"]) == {k.replace("test/", "val/") for k in clean["metrics"]}  # named by the split


def test_an_evaluation_from_a_checkpoint_uses_the_views_it_is_given(tmp_path):
    """`--model.inference` given to `dejavu test --ckpt_path` applies (the checkpoint's `inference: null`
    does not win): each evaluation equals a multi-view average built by hand from the exported weights, and
    each writes its own files, which record its setting."""
    from dejavu.models import load_weights
    from dejavu.tasks import create_task
    from dejavu.training.datamodule import DenseDataModule

    cfg = write_config(tmp_path / "c.yaml", dejavu=False, model__task={"name": "depth"}, trainer__max_epochs=2)
    run = tmp_path / "run"
    dejavu("fit", "--config", str(cfg), "--run_dir", str(run))
    test = ["test", "--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
            "--data.split", "val"]
    dejavu(*test)
    dejavu(*test, "--model.inference", "{scales: [0.5, 1.0], flip: true}")
    single = json.loads((run / "test_metrics_val.json").read_text())
    views = json.loads((run / "test_metrics_val_scales0.5-1_flip.json").read_text())
    assert single["inference"] is None and views["inference"] == {"scales": [0.5, 1.0], "flip": True}
    assert yaml.safe_load((run / "config_test_val_scales0.5-1_flip.yaml").read_text())["model"]["inference"] == \
        {"scales": [0.5, 1.0], "flip": True}
    assert (run / "config_test_val.yaml").is_file()

    net = create_model("unet", 1, width=4, depth=2)
    load_weights(net, run / "model.safetensors")
    net.eval()
    task = create_task("depth")
    data = DenseDataModule("synthetic", size=(32, 32), batch_size=4, train_length=16, val_length=8)

    def by_hand(scales: list[float], flip: bool) -> dict[str, float]:
        metrics = task.metrics()
        with torch.no_grad():
            for batch in data.test_dataloader():
                image, total, count = batch["image"], 0, 0
                for scale in scales:
                    x = image if scale == 1 else torch.nn.functional.interpolate(
                        image, scale_factor=scale, mode="bilinear", align_corners=False)
                    for mirrored in (False, True) if flip else (False,):
                        raw = net(x.flip(-1) if mirrored else x)
                        raw = raw.flip(-1) if mirrored else raw
                        total = total + torch.nn.functional.interpolate(raw, size=image.shape[-2:], mode="bilinear",
                                                                        align_corners=False)
                        count += 1
                task.update_metrics(metrics, total / count, batch)
        return {f"val/{k}": float(v) for k, v in metrics.compute().items()}

    assert single["metrics"] == pytest.approx(by_hand([1.0], False), rel=1e-5)
    assert views["metrics"] == pytest.approx(by_hand([0.5, 1.0], True), rel=1e-5)
    assert views["metrics"]["val/abs_rel"] != pytest.approx(single["metrics"]["val/abs_rel"], rel=1e-6)
    # a setting that would change the trained network is refused, naming it, even where the checkpoint has none
    with pytest.raises(SystemExit, match=r"model\.dejavu\.lpips_weight: .*Only model\.test_noise, model\.inference"):
        dejavu(*test, "--model.dejavu.lpips_weight", "0", "--overwrite", "true")


def test_a_diverging_run_stops_and_exports_nothing(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", dejavu=False, model__optim={"name": "sgd", "lr": 1e30})
    with pytest.raises(FloatingPointError, match=r"not finite at epoch 0, step \d+: task_loss .*--model\.optim\.lr"):
        dejavu("fit", "--config", str(cfg), "--run_dir", str(tmp_path / "run"))
    assert not (tmp_path / "run" / "model.safetensors").exists() and not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize("norm", [True, False], ids=["batch_norm", "norm_free"])
def test_a_diverging_regenerator_is_stopped_where_it_starts(tmp_path, norm):
    """A diverging regenerator inside `dejavu fit`: the paper's Cityscapes regenerator (random blocks
    b=32, CRM-R 20 steps) in the network's momentum SGD, at a learning rate above the CRM's stability
    limit. The run stops at the first steps, naming each term and what to change: with the paper's
    block (batch norm at every step) before any NaN; the norm-free steps (stable up to lr 15 here)
    jump to NaN or Inf in one step, and the run stops at that step."""
    cfg = write_config(tmp_path / "c.yaml", model__optim={"name": "sgd", "lr": 30.0, "crm_lr": None},
                       model__dejavu={"redaction": {"name": "random_blocks", "block_size": 32, "threshold": 0.4},
                                      "regenerator": "recursive", "regenerator_kwargs": {"steps": 20, "norm": norm},
                                      "lpips_weight": 0.0})
    with pytest.raises(FloatingPointError) as e:
        dejavu("fit", "--config", str(cfg), "--run_dir", str(tmp_path / "run"))
    message = str(e.value)
    how = r"diverged at epoch 0, step [1-5]: task_loss .*dejavu_loss .*x its first value" if norm else \
        r"(diverged|is not finite) at epoch 0, step [1-5]: task_loss .*dejavu_loss (nan|inf|.*x its first value)"
    assert re.search(how, message), message
    assert "--model.optim.lr (now 30)" in message and "no checkpoint was written" in message
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_json_outputs_are_valid_json_with_nan(tmp_path):
    write_json(tmp_path / "m.json", {"val": {"a": float("nan"), "b": [1.0, float("inf")]}})
    assert json.loads((tmp_path / "m.json").read_text()) == {"val": {"a": None, "b": [1.0, None]}}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temporary file left


def test_evaluating_without_weights_is_refused(tmp_path):
    cfg = write_config(tmp_path / "c.yaml")
    for command in ("test", "validate"):
        with pytest.raises(SystemExit, match=f"dejavu {command}: no weights.*--ckpt_path"):
            dejavu(command, "--config", str(cfg), "--run_dir", str(tmp_path / "run"))


def test_run_folder_rules(tmp_path):
    """A failed start does not block the retry; resuming a finished run keeps its results and clears
    what a kill left half-written; a file is not a run folder."""
    cfg, run = str(write_config(tmp_path / "c.yaml", dejavu=False)), tmp_path / "run"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        dejavu("fit", "--config", cfg, "--run_dir", str(run), "--data.dataset", "camvid", "--data.train_length",
               "512", "--data.val_length", "64", "--data.root", str(tmp_path / "nowhere"), "--model.task",
               "{name: segmentation}")
    assert (run / "config.yaml").is_file() and not (run / "checkpoints").exists()
    dejavu("fit", "--config", cfg, "--run_dir", str(run))  # no --overwrite needed: nothing was saved
    before = (run / "metrics.json").read_bytes()
    (run / "checkpoints" / ".last.ckpt.k1ll3d.tmp").write_bytes(b"half")
    dejavu("fit", "--config", cfg, "--run_dir", str(run), "--ckpt_path", "last")
    assert (run / "metrics.json").read_bytes() == before
    assert not list(run.glob("**/.*.tmp*"))
    with pytest.raises(SystemExit, match="is a file, not a folder"):
        dejavu("fit", "--config", cfg, "--run_dir", str(run / "metrics.json"))


def test_resume_without_checkpoint_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="nothing to resume"):
        dejavu("fit", "--config", str(write_config(tmp_path / "c.yaml")), "--run_dir", str(tmp_path / "r"),
               "--ckpt_path", "last")


def test_mismatched_checkpoint_names_file_and_parameter(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", dejavu=False)
    dejavu("fit", "--config", str(cfg), "--run_dir", str(tmp_path / "run"))
    wider = write_config(tmp_path / "w.yaml", dejavu=False, model__network={"name": "unet", "width": 8, "depth": 2})
    best = tmp_path / "run" / "checkpoints" / "best.ckpt"
    # a setting the config states and the checkpoint contradicts is an error naming both values
    clash = r"best\.ckpt was trained with other.*model\.network\.width: checkpoint 4, config 8\."
    with pytest.raises(SystemExit, match=clash):
        dejavu("test", "--config", str(wider), "--run_dir", str(tmp_path / "t0"), "--ckpt_path", str(best))
    # settings the config leaves at their defaults come from the checkpoint (adamw, 0.003 here)
    default = write_config(tmp_path / "d.yaml", dejavu=False, model__optim={"name": "sgd", "lr": 0.01})
    dejavu("test", "--config", str(default), "--run_dir", str(tmp_path / "t1"), "--ckpt_path", str(best))
    assert yaml.safe_load((tmp_path / "t1" / "config_test_val.yaml").read_text())["model"]["optim"]["name"] == "adamw"
    # without them (a checkpoint from elsewhere), the mismatch is reported clearly
    ckpt = torch.load(best, weights_only=True)
    del ckpt["hyper_parameters"]
    torch.save(ckpt, best)
    with pytest.raises(ValueError, match=r"best\.ckpt does not match the model: parameter 'net\.down\.0\.0\.weight'"):
        dejavu("test", "--config", str(wider), "--run_dir", str(tmp_path / "t"), "--ckpt_path", str(best))


def test_config_errors_name_the_key(tmp_path, capsys):
    cfg = str(write_config(tmp_path / "c.yaml"))
    with pytest.raises(SystemExit):
        dejavu("fit", "--config", cfg, "--run_dir", str(tmp_path / "r"), "--model.nonsense", "1")
    assert "nonsense" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        dejavu("fit", "--config", cfg, "--run_dir", str(tmp_path / "r"), "--model.optim.lr", "fast")
    assert "lr" in capsys.readouterr().err
    with pytest.raises(ValueError, match="widht"):
        dejavu("fit", "--config", cfg, "--run_dir", str(tmp_path / "r"), "--model.network",
               "{name: unet, widht: 3}")


@pytest.mark.parametrize("task", [{"name": "depth"}, {"name": "normals"},
                                  {"name": "multitask", "tasks": [{"name": "segmentation", "num_classes": 6},
                                                                  {"name": "depth"}, {"name": "normals"}]}])
def test_other_tasks_train(tmp_path, task):
    mtl = task["name"] == "multitask"
    network = {"name": "segnet_mtl", "width": 4, "depth": 2} if mtl else TINY["model"]["network"]
    cfg = write_config(tmp_path / "c.yaml", model__task=task, model__network=network)
    dejavu("fit", "--config", str(cfg), "--run_dir", str(tmp_path / "run"))
    assert (tmp_path / "run" / "figure.png").is_file()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """A 3-epoch DejaVu run (4 steps an epoch, last.ckpt every 3 steps) and how to start it again."""
    tmp = tmp_path_factory.mktemp("kill")
    cfg = write_config(tmp / "c.yaml", trainer__max_epochs=3, data__num_workers=1,
                       model__dejavu={**DEJAVU, "redaction": {"name": "random_blocks", "block_size": 8}})
    env = {**os.environ, "PYTHONPATH": str(TESTS)}

    def fit(run: str, *extra: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "dejavu", "fit", "--config", str(cfg), "--run_dir", str(tmp / run),
               "--last_every_n_steps", "3", *extra]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp)

    assert fit("whole").returncode == 0
    return tmp, fit


KILL_WINDOWS = {  # where the kill lands: a random training step, the last epoch's validation, the export
    "training": lambda: ["--trainer.callbacks+=helpers.KillAt",
                         f"--trainer.callbacks.step={int(torch.randint(4, 11, ()))}"],
    # step 12 is the last epoch's last batch, where --last_every_n_steps 3 falls too: a resume from a state
    # saved there still runs the epoch's validation and writes metrics.json with its "val"
    "validation": lambda: ["--trainer.callbacks+=helpers.KillInValidation", "--trainer.callbacks.step=12"],
    # the third file of the results is model.json: a resume writes the rest
    "export": lambda: ["--trainer.callbacks+=helpers.KillInExport", "--trainer.callbacks.write=3"],
}


@pytest.mark.slow
@pytest.mark.parametrize("window", KILL_WINDOWS)
def test_sigkill_then_resume_is_exact(uninterrupted, window):
    """A run killed by SIGKILL (no handler, no clean-up) and resumed from its last checkpoint ends with
    the same files as the uninterrupted run: weights, CRM and metrics byte for byte, the model's
    description and the figure written. Data order, random masks, optimiser and schedule continue
    where they were."""
    tmp, fit = uninterrupted
    kill = KILL_WINDOWS[window]()
    killed = fit(window, *kill)
    assert killed.returncode == -9 and not (tmp / window / "metrics.json").exists(), killed.stderr[-2000:]
    resumed = fit(window, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for name in ("model.safetensors", "model.pt", "crm.safetensors", "model.json", "metrics.json"):
        assert (tmp / window / name).read_bytes() == (tmp / "whole" / name).read_bytes(), f"{name}, {kill}"
    assert (tmp / window / "figure.png").is_file() and not list((tmp / window).glob("**/.*.tmp*"))
    assert json.loads((tmp / window / "metrics.json").read_text())["val"]["val/mIoU"] >= 0


def test_last_checkpoint_is_written_after_every_epoch(tmp_path):
    """README: last.ckpt is rewritten at each epoch's end. Lightning's save_last only rewrote it when
    the monitored metric improved, so --ckpt_path last could go back several epochs."""
    run = tmp_path / "run"
    dejavu("fit", "--config", str(write_config(tmp_path / "c.yaml", dejavu=False, trainer__max_epochs=3)),
           "--run_dir", str(run), "--trainer.callbacks+=helpers.WorseningMetric")  # best stays at epoch 0
    steps = [torch.load(run / "checkpoints" / n, weights_only=True)["global_step"] for n in ("best.ckpt", "last.ckpt")]
    assert steps == [4, 12]


@pytest.mark.slow
def test_a_run_folder_in_use_is_refused(tmp_path):
    """Two runs in one folder: with --overwrite the second deleted the first's files while it ran, without
    it one died of TensorBoard's FileNotFoundError. The folder's lock refuses the second run by name, and a
    kill releases it."""
    cfg, run, marker = write_config(tmp_path / "c.yaml", dejavu=False), tmp_path / "run", tmp_path / "started"
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    first = subprocess.Popen([sys.executable, "-m", "dejavu", "fit", "--config", str(cfg), "--run_dir", str(run),
                              "--trainer.callbacks+=helpers.HoldAtStart", f"--trainer.callbacks.marker={marker}"],
                             env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert first.poll() is None and time.monotonic() < deadline, "the first run did not start"
            time.sleep(0.2)
        files = sorted(p.relative_to(run) for p in run.rglob("*"))
        for extra in ([], ["--overwrite", "true"]):
            with pytest.raises(SystemExit, match=r"run folder .*run is in use by another dejavu run"):
                dejavu("fit", "--config", str(cfg), "--run_dir", str(run), *extra)
        assert sorted(p.relative_to(run) for p in run.rglob("*")) == files  # the first run's files untouched
    finally:
        first.kill()
        first.wait()
    dejavu("fit", "--config", str(cfg), "--run_dir", str(run), "--overwrite", "true")  # the kill released it
    assert (run / "metrics.json").is_file()


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", data__train_length=32)
    run, probe = tmp_path / "run", tmp_path / "probe"
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    cmd = [sys.executable, "-m", "dejavu", "fit", "--config", str(cfg), "--run_dir", str(run),
           "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
           "--trainer.callbacks+=helpers.DDPProbe", f"--trainer.callbacks.out={probe}"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = (json.loads((probe / f"rank{i}.json").read_text()) for i in (0, 1))
    assert r0["world"] == r1["world"] == 2 and r0["pid"] != r1["pid"]
    assert r0["seen"] and not set(r0["seen"]) & set(r1["seen"])  # the ranks saw different images
    assert len(set(r0["seen"]) | set(r1["seen"])) == 32
    assert r0["params"] == r1["params"] and r0["first"] == r1["first"]  # gradients were synchronised
    assert len(list(run.glob("metrics.json"))) == 1 and json.loads((run / "metrics.json").read_text())["steps"] == 4
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1


def test_demo_quick(tmp_path):
    demo(["--quick", "--out", str(tmp_path / "demo")])
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert set(summary["metrics"]) == {"baseline", "DejaVu"}
    assert "val/mIoU" in summary["metrics"]["DejaVu"]
    assert (tmp_path / "demo" / "figure.png").is_file() and (tmp_path / "demo" / "summary.md").is_file()
    with pytest.raises(SystemExit, match="already exists"):
        demo(["--quick", "--out", str(tmp_path / "demo")])


@pytest.mark.slow
def test_compare_two_seeds(tmp_path):
    a, b = write_config(tmp_path / "a.yaml", dejavu=False), write_config(tmp_path / "b.yaml")
    compare(["--config", str(a), "--config", str(b), "--seeds", "2", "--out", str(tmp_path / "cmp")])
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    s = result["B"][0]["summary"]["val/mIoU"]
    assert s["n"] == 2 and s["ci95_low"] <= s["diff_mean"] <= s["ci95_high"]
    assert (tmp_path / "cmp" / "compare.md").is_file()


def test_compare_refuses_arms_it_could_not_compare(tmp_path):
    """An override that would make the baseline arm a DejaVu run (`-- --model.dejavu.gamma 2`), and arms of two
    tasks (their losses are not comparable), are refused before any training."""
    a, b = write_config(tmp_path / "a.yaml", dejavu=False), write_config(tmp_path / "b.yaml")
    args = ["--config", str(a), "--config", str(b), "--seeds", "1", "--out", str(tmp_path / "cmp")]
    with pytest.raises(SystemExit, match=r"override --model.dejavu.gamma applies to every arm.*baseline .*a\.yaml"):
        compare([*args, "--", "--model.dejavu.gamma", "2"])
    with pytest.raises(SystemExit, match=r"--model.dejavu null switches DejaVu off"):
        compare(["--config", str(b), "--config", str(b), "--seeds", "1", "--out", str(tmp_path / "c2"), "--",
                 "--model.dejavu", "null"])
    depth = write_config(tmp_path / "d.yaml", dejavu=False, model__task={"name": "depth"})
    with pytest.raises(SystemExit, match=r"train different tasks .*a\.yaml.*segmentation.*d\.yaml.*depth"):
        compare(["--config", str(a), "--config", str(depth), "--seeds", "1", "--out", str(tmp_path / "c3")])
    assert not (tmp_path / "cmp").exists() and not (tmp_path / "c3").exists()


@pytest.mark.slow
def test_compare_several_arms_trains_the_reference_once(tmp_path):
    a = write_config(tmp_path / "a.yaml", dejavu=False)
    b = write_config(tmp_path / "b.yaml")
    compare(["--config", str(a), "--config", str(b), "--config", str(b), "--seeds", "1",
             "--out", str(tmp_path / "cmp"), "--test-noise", "0", "0.3", "--", "--trainer.max_epochs", "1"])
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert {"val/mIoU", "test_noise0/mIoU", "test_noise0.3/mIoU"} <= set(result["B"][0]["summary"])
    assert (tmp_path / "cmp" / "2_b" / "seed0" / "test_metrics_test_noise0.3.json").is_file()
    assert [arm["name"] for arm in result["B"]] == ["1_b", "2_b"]  # a repeated stem gets its position
    assert sorted(p.name for p in (tmp_path / "cmp").iterdir() if p.is_dir()) == ["0_a", "1_b", "2_b"]
    # same config, same seed: the two arms agree exactly, so their differences with A do too
    assert result["B"][0]["summary"] == result["B"][1]["summary"]
    assert (tmp_path / "cmp" / "compare.md").read_text().count("| metric |") == 2


def test_paired_summary_by_hand():
    s = paired_summary([1.0, 2.0, 3.0], [2.0, 2.5, 4.5])  # differences 1, 0.5, 1.5: mean 1, sd 0.5
    assert s["diff_mean"] == pytest.approx(1.0)
    half = 4.302652729911275 * 0.5 / 3**0.5  # t(0.975, 2) = 4.3027
    assert s["ci95_low"] == pytest.approx(1 - half) and s["ci95_high"] == pytest.approx(1 + half)


STUDY = sorted((ROOT / "benchmarks" / "study").rglob("*.yaml"))  # benchmarks/RESULTS.md


@pytest.mark.parametrize("text,message", [
    ("model: {lr: 0.1\n", r"c\.yaml is not valid YAML: .*line"),  # an unclosed flow mapping
    ("base: 3\n", r"c\.yaml names base 3; base must be the file name"),
    ("base: ''\n", r"c\.yaml names base ''; base must be the file name"),
    ("- a\n- b\n", r"c\.yaml must hold keys and values \(a YAML mapping\), got a list"),
])
def test_a_bad_config_or_base_names_its_file(tmp_path, text, message):
    """A malformed config or base gave a parser traceback "in <unicode string>" without the file's name."""
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(SystemExit, match=message):
        expand_bases(["fit", "--config", str(tmp_path / "c.yaml")])
    (tmp_path / "b.yaml").write_bytes(b"\xff\xfe\x00binary")
    (tmp_path / "d.yaml").write_text("base: b.yaml\n")
    with pytest.raises(SystemExit, match=r"b\.yaml is not a text file"):
        expand_bases(["fit", "--config", str(tmp_path / "d.yaml")])


def test_base_on_the_command_line_is_refused_not_ignored(tmp_path):
    with pytest.raises(SystemExit, match=r"--base is a config file's key.*--config BASE\.yaml --config YOURS"):
        dejavu("fit", "--base", str(tmp_path / "b.yaml"), "--config", str(tmp_path / "c.yaml"))


resolved = compose_config  # the config as LightningCLI composes it (bases first), without building anything


@pytest.mark.parametrize("config", CONFIGS + STUDY, ids=[f"{c.parent.name}/{c.name}" for c in CONFIGS + STUDY])
def test_shipped_configs_build(config, tmp_path):
    args = ["--config", str(config), "--run_dir", str(tmp_path / "r"), "--data.root", str(tmp_path)]
    spec = resolved(config)["model"]
    if any(a.get("name") == "text" for a in spec.get("auxiliaries") or []):  # real use needs local CLIP weights
        args += ["--model.auxiliaries", "[{name: text, model: dejavu-tiny-clip, random_init: true}]"]
    if spec.get("pretrained"):
        args += ["--model.pretrained", "null"]
    if (spec.get("dejavu") or {}).get("regenerator_weights"):  # written by the crm_pretrain config's run
        args += ["--model.dejavu.regenerator_weights", "null"]
    if (spec.get("dejavu") or {}).get("lpips_weight"):  # the paper recipes: LPIPS with a random backbone
        args += ["--model.dejavu.lpips_weights", "random"]
    if spec["network"].get("encoder_weights"):  # fetched online; here the encoder starts random
        args += ["--model.network.encoder_weights", "null"]
    cli = DejaVuCLI(args=args, run=False)
    assert (cli.model.dejavu_loss is None) == (spec["dejavu"] is None)
    cli.model.net(torch.rand(2, 3, 64, 64))  # 2: a pyramid-pooling head normalises a 1x1 map over the batch


def test_each_dejavu_config_is_its_baseline_plus_dejavu():
    for baseline in [c for c in CONFIGS if "baseline" in c.name]:
        overlay = baseline.with_name(baseline.name.replace("baseline", "dejavu"))
        assert yaml.safe_load(overlay.read_text())["base"] == baseline.name
        a, b = resolved(baseline), resolved(overlay)
        assert b["model"].pop("dejavu") and a["model"].pop("dejavu") is None
        a.pop("run_dir"), b.pop("run_dir")
        assert a == b, baseline


def test_each_pretrained_crm_config_is_its_dejavu_config_plus_the_stored_crm():
    for post in [c for c in CONFIGS if c.name.endswith("pretrained_crm.yaml")]:
        dejavu_cfg = post.with_name(yaml.safe_load(post.read_text())["base"])
        pre = resolved(post.with_name(post.name.replace("dejavu_pretrained_crm", "crm_pretrain")))
        a, b = resolved(dejavu_cfg), resolved(post)
        assert pre["model"]["strategy"] == {"name": "crm_pretraining"} and a["model"]["strategy"] is None
        assert {**pre["model"], "strategy": None} == a["model"]
        assert b["model"]["dejavu"].pop("regenerator_weights") == f"{pre['run_dir']}/crm.safetensors"
        a.pop("run_dir"), b.pop("run_dir")
        assert a == b, post


def test_bases_expand_in_order_relative_to_the_config(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "root.yaml").write_text("trainer: {max_epochs: 1}\n")
    (tmp_path / "sub" / "mid.yaml").write_text("base: ../root.yaml\n")
    (tmp_path / "sub" / "top.yaml").write_text("base: mid.yaml\n")
    top = str(tmp_path / "sub" / "top.yaml")
    assert expand_bases(["fit", "--config", top, "--x", "1"]) == [
        "fit", "--config", str(tmp_path / "sub" / "../root.yaml"), "--config", str(tmp_path / "sub" / "mid.yaml"),
        "--config", top, "--x", "1"]
    (tmp_path / "sub" / "mid.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(SystemExit, match=r"nowhere\.yaml"):
        expand_bases(["--config", top])
    (tmp_path / "sub" / "mid.yaml").write_text("base: top.yaml\n")
    with pytest.raises(SystemExit, match="cycle"):
        expand_bases(["--config", top])


def test_a_composed_run_saves_a_config_that_stands_alone(tmp_path):
    write_config(tmp_path / "baseline.yaml", dejavu=False)
    (tmp_path / "dejavu.yaml").write_text(yaml.safe_dump({"base": "baseline.yaml", "model": {"dejavu": DEJAVU}}))
    run = tmp_path / "run"
    dejavu("fit", "--config", str(tmp_path / "dejavu.yaml"), "--run_dir", str(run))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved.get("base") is None and saved["model"]["dejavu"]["regenerator"] == "recursive"
    assert saved["model"]["network"]["width"] == 4  # from the base
    cli = DejaVuCLI(args=["--config", str(run / "config.yaml"), "--run_dir", str(tmp_path / "again")], run=False)
    assert cli.model.dejavu_loss is not None


def test_composing_a_config_merges_as_the_command_does(tmp_path):
    """compose_config is the command's own parse: model.optim merges key by key, a dict option is replaced whole,
    and the random state is left as it was."""
    write_config(tmp_path / "baseline.yaml", dejavu=False)
    (tmp_path / "child.yaml").write_text(yaml.safe_dump({"base": "baseline.yaml", "model": {
        "optim": {"lr": 0.005}, "network": {"name": "unet", "width": 8, "depth": 2}}}))
    state = torch.random.get_rng_state()
    composed = compose_config(tmp_path / "child.yaml")["model"]
    assert torch.equal(torch.random.get_rng_state(), state)
    assert (composed["optim"]["name"], composed["optim"]["lr"]) == ("adamw", 0.005)
    assert composed["network"]["width"] == 8
    cli = DejaVuCLI(args=["--config", str(tmp_path / "child.yaml"), "--run_dir", str(tmp_path / "r")], run=False)
    assert (cli.model.optim.name, cli.model.optim.lr) == ("adamw", 0.005)
    assert cli.model.hparams.network == composed["network"]


def test_class_counts_come_from_the_dataset():
    task = {"name": "multitask", "tasks": [{"name": "segmentation"}, {"name": "depth"}]}
    fill_class_counts(task, "camvid")
    assert task["tasks"][0] == {"name": "segmentation", "num_classes": 11, "ignore_index": 11,
                                "class_names": list(CAMVID_CLASSES)}
    with pytest.raises(ValueError, match="leave num_classes out"):
        fill_class_counts({"name": "segmentation", "num_classes": 7}, "synthetic")
    # your own dataset, by class path: a folder's counts come from its init_args
    folder = {"class_path": "dejavu.data.ImageFolder", "init_args": {"num_classes": 3, "ignore_index": 0}}
    task = {"name": "segmentation"}
    fill_class_counts(task, folder)
    assert task == {"name": "segmentation", "num_classes": 3, "ignore_index": 0}


def test_panoptic_things_that_contradict_the_dataset_are_refused():
    """Things that differ from the dataset's are refused: PQ_th and PQ_st would split the classes differently."""
    from dejavu.data import COCOPanoptic

    task = {"name": "panoptic"}
    fill_class_counts(task, "coco_panoptic")
    assert task["things"] == list(COCOPanoptic.things)
    wrong = {"name": "panoptic", "things": [0, 1]}
    with pytest.raises(ValueError, match=r"things=\[0, 1\], but the COCOPanoptic dataset's thing classes are"):
        fill_class_counts(wrong, "coco_panoptic")
    with pytest.raises(ValueError, match=r"cannot import class_path 'mine\.Nowhere'"):
        fill_class_counts(task, {"class_path": "mine.Nowhere"})


def test_a_crm_pretrained_on_the_ground_truth_starts_a_dejavu_run(tmp_path):
    cfg = str(write_config(tmp_path / "c.yaml"))
    pre = tmp_path / "pre"
    dejavu("fit", "--config", cfg, "--run_dir", str(pre), "--model.strategy", "{name: crm_pretraining}")
    metrics = json.loads((pre / "metrics.json").read_text())["val"]
    assert metrics["val/regen_mse_gt"] > 0
    # the network is neither trained nor changed: its export is its seeded initialisation
    fresh = DejaVuCLI(args=["--config", cfg, "--run_dir", str(tmp_path / "x")], run=False).model.net
    exported = load_file(pre / "model.safetensors")
    assert all(torch.equal(v, fresh.state_dict()[k].contiguous()) for k, v in exported.items())
    crm = load_file(pre / "crm.safetensors")
    cli = DejaVuCLI(args=["--config", cfg, "--run_dir", str(tmp_path / "y"),
                          "--model.dejavu.regenerator_weights", str(pre / "crm.safetensors")], run=False)
    assert all(torch.equal(v, crm[k]) for k, v in cli.model.dejavu_loss.regenerator.state_dict().items())
    fresh_crm = DejaVuCLI(args=["--config", cfg, "--run_dir", str(tmp_path / "f")], run=False).model.dejavu_loss
    assert not all(torch.equal(v, crm[k]) for k, v in fresh_crm.regenerator.state_dict().items())  # it trained
    with pytest.raises(ValueError, match="do not fit"):
        DejaVuCLI(args=["--config", cfg, "--run_dir", str(tmp_path / "z"), "--model.dejavu.regenerator_kwargs",
                        "{steps: 3, width: 16}", "--model.dejavu.regenerator_weights", str(pre / "crm.safetensors")],
                  run=False)

