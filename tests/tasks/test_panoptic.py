"""Panoptic segmentation: the synthetic scenes' instances, the task's targets, grouping and loss,
panoptic quality against a hand-computed example, the figure, and a run of the shipped config."""

import json

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from dejavu.data import SyntheticScenes
from dejavu.data.synthetic import THINGS, render_scene
from dejavu.tasks import Panoptic, PanopticMetrics, create_task
from dejavu.tasks.panoptic import instance_centres, panoptic_map


def pairs(classes, instances):
    return torch.stack([torch.tensor(classes), torch.tensor(instances)], -1)


def test_panoptic_quality_matches_a_hand_computed_example():
    """Stuff class 0, thing class 1, two 4x6 images.

    Image A: the car (8 px) is predicted on 6 of its pixels (IoU 6/8 = 0.75, a match); stuff is 16 px
    in truth and 18 predicted, all 16 shared (IoU 16/18). Image B: the car (4 px, top right) is missed
    (a false negative) and a car is predicted elsewhere on stuff (a false positive); stuff: 20 px
    each, 16 shared (IoU 16/24).
    Thing: TP 1, FP 1, FN 1: SQ 0.75, RQ 1 / (1 + 0.5 + 0.5) = 0.5, PQ 0.375.
    Stuff: TP 2: SQ = the matches' mean IoU (16/18 + 16/24) / 2 = 0.7778, RQ 1, PQ 0.7778.
    """
    cls_a, inst_a = np.zeros((4, 6), int), np.zeros((4, 6), int)
    cls_a[:, 0:2], inst_a[:, 0:2] = 1, 1
    pcls_a, pinst_a = np.zeros((4, 6), int), np.zeros((4, 6), int)
    pcls_a[0:3, 0:2], pinst_a[0:3, 0:2] = 1, 5  # any instance number: matching is by overlap
    cls_b, inst_b = np.zeros((4, 6), int), np.zeros((4, 6), int)
    cls_b[0:2, 4:6], inst_b[0:2, 4:6] = 1, 1
    pcls_b, pinst_b = np.zeros((4, 6), int), np.zeros((4, 6), int)
    pcls_b[2:4, 0:2], pinst_b[2:4, 0:2] = 1, 2
    target = torch.stack([pairs(cls_a, inst_a), pairs(cls_b, inst_b)])
    pred = torch.stack([pairs(pcls_a, pinst_a), pairs(pcls_b, pinst_b)])
    metric = PanopticMetrics(things=[1], stuffs=[0])
    metric.update(pred[:1], target[:1])  # accumulated over batches, as over a dataset
    metric.update(pred[1:], target[1:])
    got = {k: float(v) for k, v in metric.compute().items()}
    stuff_sq = (16 / 18 + 16 / 24) / 2
    expected = {"PQ_th": 0.375, "SQ_th": 0.75, "RQ_th": 0.5, "PQ_st": stuff_sq, "SQ_st": stuff_sq, "RQ_st": 1.0,
                "PQ": (0.375 + stuff_sq) / 2, "SQ": (0.75 + stuff_sq) / 2, "RQ": 0.75}
    assert got == pytest.approx(expected, abs=1e-6)  # torchmetrics sums float32 IoUs


def test_no_stuff_classes_means_no_stuff_group():
    """With no stuff class there is no PQ_st (a mean over no class is not 0)."""
    t = torch.zeros(1, 4, 4, 2, dtype=torch.long)
    t[:, :2, :2] = torch.tensor([1, 1])
    m = PanopticMetrics(things=[0, 1], stuffs=[])
    m.update(t, t)
    out = m.compute()
    assert "PQ_st" not in out and "SQ_st" not in out and out["PQ_th"] == 1.0


def test_void_target_pixels_are_left_out():
    target = pairs(np.array([[0, 0, 255, 255]]), np.zeros((1, 4), int))[None]
    pred = pairs(np.array([[0, 0, 0, 0]]), np.zeros((1, 4), int))[None]  # predicts stuff on the void pixels too
    metric = PanopticMetrics(things=[1], stuffs=[0])
    metric.update(pred, target)
    assert float(metric.compute()["PQ"]) == pytest.approx(1.0)


def test_synthetic_scenes_number_each_primitive():
    for index in range(6):
        scene = render_scene(0, index, (48, 64))
        sem, inst = scene["semantic"], scene["instance"]
        assert (inst[~np.isin(sem, THINGS)] == 0).all() and (inst[np.isin(sem, THINGS)] > 0).all()
        for k in np.unique(inst[inst > 0]):  # one instance, one class
            assert len(np.unique(sem[inst == k])) == 1
        assert np.array_equal(inst, render_scene(0, index, (48, 64))["instance"])  # a function of (seed, index)
    item = SyntheticScenes(2, (16, 16))[0]
    assert item["instance"].dtype == torch.int64 and SyntheticScenes.things == THINGS


def test_centres_and_offsets_of_a_known_instance():
    inst = torch.zeros(2, 6, 8, dtype=torch.long)
    inst[0, 1:4, 2:5] = 3  # a 3x3 square centred at (2, 3)
    heat, offsets, mask = instance_centres(inst, sigma=1.0)
    assert heat.shape == (2, 1, 6, 8) and float(heat[0, 0, 2, 3]) == pytest.approx(1.0)
    assert float(heat[1].max()) == 0 and int(mask.sum()) == 9
    assert float(offsets[0, 0, 1, 2]) == pytest.approx(1 / 6) and float(offsets[0, 1, 1, 2]) == pytest.approx(1 / 8)
    assert float(offsets[0].abs()[:, ~mask[0, 0]].max()) == 0


def perfect_raw(task, batch):
    """The raw output that decodes to the ground truth: confident logits, the true heatmap and offsets."""
    cond = task.target_condition(batch)
    return torch.cat([cond[:, :task.num_classes] * 20, cond[:, task.num_classes:]], 1)


def test_grouping_recovers_the_true_instances():
    ds = SyntheticScenes(4, (48, 48), seed=3)
    batch = default_collate([ds[i] for i in range(4)])
    task = Panoptic(num_classes=6, things=list(THINGS), sigma=2.0, nms_kernel=5)
    raw = perfect_raw(task, batch)
    metrics = task.compute_metrics(raw, batch)
    assert metrics["PQ"] == pytest.approx(1.0) and metrics["PQ_th"] == pytest.approx(1.0)
    assert metrics["mIoU"] == pytest.approx(1.0)
    # flip test-time augmentation: a mirrored image's prediction, mirrored back, groups the same way
    flipped = {k: v.flip(-1) for k, v in batch.items() if k in ("image", "semantic", "instance")}
    back = task.mirror(perfect_raw(task, flipped))
    assert task.compute_metrics(back, batch)["PQ"] == pytest.approx(1.0)
    # without centres every thing pixel stays instance 0
    empty = panoptic_map(batch["semantic"], torch.zeros(4, 1, 48, 48), torch.zeros(4, 2, 48, 48), THINGS)
    assert (empty[:, 1] == 0).all()


def test_panoptic_loss_and_condition():
    ds = SyntheticScenes(2, (32, 32))
    batch = default_collate([ds[i] for i in range(2)])
    task = create_task("panoptic", num_classes=6, things=[3, 4, 5], sigma=2.0)
    raw = torch.randn(2, task.channels, 16, 16, requires_grad=True)  # smaller than the labels: resized
    loss = task.loss(raw, batch)
    loss.backward()
    assert torch.isfinite(loss) and raw.grad.abs().sum() > 0
    assert task.loss(perfect_raw(task, batch), batch) < 0.01 * loss
    cond = task.condition(raw)
    assert cond.shape == (2, 9, 16, 16) and torch.allclose(cond[:, :6].sum(1), torch.ones(2, 16, 16))
    with pytest.raises(ValueError, match="needs 'semantic' and 'instance'"):
        task.loss(raw, {"semantic": batch["semantic"]})
    with pytest.raises(ValueError, match=r"things must be a non-empty list of classes in 0\.\.5"):
        Panoptic(num_classes=6, things=[6])
    bad = dict(batch, semantic=batch["semantic"] + 7)
    with pytest.raises(ValueError, match=r"label 7 is outside 0\.\.5"):
        task.loss(raw, bad)


def test_panoptic_figure_gives_each_instance_its_own_colour():
    task = Panoptic(num_classes=3, things=[1, 2])
    value = torch.zeros(2, 4, 6, dtype=torch.long)
    value[0, :, 2:] = 1  # class 1 everywhere right of column 2...
    value[1, :, 2:4], value[1, :, 4:] = 1, 2  # ...as two instances
    rgb = task.view(value)
    assert rgb.shape == (4, 6, 3) and not np.allclose(rgb[0, 2], rgb[0, 4]) and np.allclose(rgb[0, 2], rgb[3, 3])


def test_dejavu_fit_on_the_synthetic_panoptic_config_writes_pq(tmp_path):
    from dejavu.training.lightning_cli import fit_run, packaged_config

    metrics = fit_run(packaged_config("synthetic/panoptic_dejavu.yaml"), tmp_path / "run",
                      "--trainer.max_epochs", "1", "--data.train_length", "16", "--data.val_length", "8",
                      "--data.num_workers", "0", "--trainer.enable_progress_bar", "false")
    assert {"val/PQ", "val/PQ_th", "val/PQ_st", "val/SQ", "val/RQ", "val/reliance"} <= set(metrics["val"])
    assert 0 <= metrics["val"]["val/PQ"] <= 1 and metrics["dejavu"]
    assert (tmp_path / "run" / "figure.png").is_file()
    assert json.loads((tmp_path / "run" / "model.json").read_text())["classes"][3] == "sphere"
    # dejavu predict writes the panoptic map as COCO-style RGB-encoded ids: class x 1000 + instance
    from PIL import Image

    from dejavu.cli.deploy import predict

    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    predict(tmp_path / "run", str(tmp_path / "images"), tmp_path / "out", overlay=True)
    rgb = np.asarray(Image.open(tmp_path / "out" / "a_panoptic.png")).astype(int)
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    assert rgb.shape == (20, 30, 3) and ((ids // 1000) < 6).all() and (tmp_path / "out" / "a_overlay.png").is_file()


def test_the_coco_panoptic_preset_regenerates_from_a_panoptic_prediction():
    from dejavu import DejaVuLoss

    task = Panoptic(num_classes=6, things=[3, 4, 5], sigma=2.0)
    # a CRM that has moved from its zero start (a fresh one sends no gradient, by design)
    loss_fn = DejaVuLoss.from_preset("coco_panoptic", task.channels, adapter=task.condition, lpips_weight=0,
                                     regenerator_kwargs={"stages": 2, "init_scale": 0.02})
    image = torch.rand(2, 3, 32, 32)
    raw = torch.randn(2, task.channels, 32, 32, requires_grad=True)
    loss = loss_fn(image, raw).loss
    loss.backward()
    assert torch.isfinite(loss) and raw.grad[:, 6:].abs().sum() > 0  # the heatmap and offsets get a signal too


def test_a_query_based_export_names_the_fields_of_its_prediction():
    from dejavu.models import QueryPrediction
    from dejavu.tasks import QueryPanoptic

    assert QueryPanoptic.output_names == QueryPrediction._fields
