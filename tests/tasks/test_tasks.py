import math

import numpy as np
import pytest
import torch

from dejavu import DejaVuLoss
from dejavu.tasks import Depth, MultiTask, Normals, Segmentation, create_task
from dejavu.tasks.metrics import BoundaryIoU


def numpy_miou(pred: np.ndarray, target: np.ndarray, classes: int, ignore: int) -> tuple[float, float]:
    """Independent reference: confusion matrix, IoU per class present in prediction or target."""
    keep = target != ignore
    cm = np.bincount(classes * target[keep] + pred[keep], minlength=classes**2).reshape(classes, classes)
    inter, union = np.diag(cm), cm.sum(0) + cm.sum(1) - np.diag(cm)
    present = union > 0
    return float((inter[present] / union[present]).mean()), float(inter.sum() / cm.sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_segmentation_metrics_match_a_numpy_confusion_matrix(seed):
    g = torch.Generator().manual_seed(seed)
    task = Segmentation(6, ignore_index=255)
    logits = torch.randn(3, 6, 20, 24, generator=g)
    logits[:, 5] -= 100  # class 5 never predicted ...
    target = torch.randint(0, 5, (3, 20, 24), generator=g)  # ... nor present: left out of the mean
    target[:, :4] = 255
    miou, acc = numpy_miou(logits.argmax(1).numpy().ravel(), target.numpy().ravel(), 6, 255)
    got = task.compute_metrics(logits, target)
    assert got["mIoU"] == pytest.approx(miou, abs=1e-6)
    assert got["pixel_acc"] == pytest.approx(acc, abs=1e-6)


def test_metrics_accumulate_over_batches():
    task = Segmentation(4)
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(4, 4, 8, 8, generator=g), torch.randint(0, 4, (4, 8, 8), generator=g)
    m = task.metrics()
    task.update_metrics(m, logits[:2], target[:2])
    task.update_metrics(m, logits[2:], target[2:])
    assert float(m.compute()["mIoU"]) == pytest.approx(task.compute_metrics(logits, target)["mIoU"])


def test_segmentation_loss_ignores_the_ignore_label():
    task = Segmentation(3, ignore_index=255)
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 1, 0, 0] = 10
    target = torch.full((1, 2, 2), 255)
    target[0, 0, 0] = 1
    assert task.loss(logits, target) < 1e-3


def test_an_all_ignored_segmentation_batch_has_zero_loss_not_nan():
    """A batch with no labelled pixel has loss 0 (not cross-entropy's NaN mean over no pixel); otherwise the
    loss is the mean over labelled pixels."""
    task = Segmentation(4)
    raw = torch.randn(2, 4, 8, 8, requires_grad=True)
    labels = torch.randint(0, 4, (2, 8, 8))
    labels[0, :4] = 255
    torch.testing.assert_close(task.loss(raw, labels), torch.nn.functional.cross_entropy(raw, labels, ignore_index=255))
    ignored = task.loss(raw, torch.full((2, 8, 8), 255))
    ignored.backward()
    assert ignored.item() == 0 and raw.grad.abs().max() == 0


def test_normal_targets_count_as_unit_vectors():
    """A target is its direction: length 2 counts as length 1, so cos stays at most 1 and the loss at least 0."""
    task = Normals()
    raw = torch.randn(2, 3, 8, 8)
    unit = torch.nn.functional.normalize(torch.randn(2, 3, 8, 8), dim=1)
    unit[0, :, :2] = 0  # unknown
    torch.testing.assert_close(task.loss(raw, 2 * unit), task.loss(raw, unit))
    assert task.loss(unit, 2 * unit) < 1e-6
    torch.testing.assert_close(task.target_condition(3 * unit), unit)


def test_depth_metrics_by_hand():
    task = Depth()
    pred = torch.tensor([1.0, 2.0, 4.0, 9.0]).log().view(1, 1, 2, 2)  # raw output is log-depth
    target = torch.tensor([1.0, 1.0, 6.0, 0.0]).view(1, 1, 2, 2)  # last pixel invalid
    m = task.compute_metrics(pred, target)
    # valid: p = 1, 2, 4 ; t = 1, 1, 6 ; ratios 1, 2, 1.5
    assert m["abs_rel"] == pytest.approx((0 + 1 + 2 / 6) / 3)
    assert m["sq_rel"] == pytest.approx((0 + 1 + 4 / 6) / 3)
    assert m["rmse"] == pytest.approx(math.sqrt((0 + 1 + 4) / 3))
    assert m["rmse_log"] == pytest.approx(math.sqrt((math.log(2) ** 2 + math.log(4 / 6) ** 2) / 3))
    assert m["delta1"] == pytest.approx(1 / 3)  # < 1.25: ratio 1
    assert m["delta2"] == pytest.approx(2 / 3)  # < 1.5625: ratios 1, 1.5
    assert m["delta3"] == pytest.approx(2 / 3)  # < 1.953125: ratio 2 is not
    assert m["abs_err"] == pytest.approx((0 + 1 + 2) / 3)


def test_depth_losses():
    t = torch.tensor([1.0, 2.0, 4.0, 0.0]).view(1, 1, 2, 2)
    raw = torch.tensor([2.0, 2.0, 4.0, 7.0]).log().view(1, 1, 2, 2)
    assert Depth("l1").loss(raw, t) == pytest.approx(1 / 3)
    silog = Depth("silog")
    exact = torch.where(t > 0, t, torch.ones_like(t)).log()
    assert silog.loss(exact, t) < 1e-3
    assert silog.loss(exact + 0.5, t) < silog.loss(exact + torch.tensor([0.5, 0, 0, 0]).view(1, 1, 2, 2), t)


def test_normal_metrics_by_hand():
    task = Normals()
    target = torch.tensor([[1.0, 0, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0]]).T.reshape(1, 3, 2, 2)
    s = 1 / math.sqrt(2)
    pred = torch.tensor([[1.0, 0, 0], [s, s, 0], [1, 0, 0], [0, 1, 0]]).T.reshape(1, 3, 2, 2)
    m = task.compute_metrics(pred, target)  # angles 0, 45, 90; last pixel has no target
    assert m["mean_angle"] == pytest.approx(45.0, abs=1e-4)
    assert m["median_angle"] == pytest.approx(45.0, abs=0.01)
    assert m["within_11.25"] == pytest.approx(1 / 3)
    assert m["within_30"] == pytest.approx(1 / 3)
    assert task.loss(target[..., :1, :], target[..., :1, :]) < 1e-6


def test_multitask_splits_and_conditions():
    mt = create_task("multitask", tasks=[{"name": "segmentation", "num_classes": 4}, {"name": "depth"},
                                         {"name": "normals"}], weights=[1.0, 0.5, 1.0])
    assert isinstance(mt, MultiTask) and mt.channels == 8
    raw = torch.randn(2, 8, 16, 16, requires_grad=True)
    batch = {"semantic": torch.randint(0, 4, (2, 16, 16)), "depth": torch.rand(2, 1, 16, 16) + 1,
             "normals": torch.nn.functional.normalize(torch.randn(2, 3, 16, 16), dim=1)}
    parts = [t.loss(r, batch) for t, r in zip(mt.tasks, mt.split(raw), strict=True)]
    assert mt.loss(raw, batch).item() == pytest.approx((parts[0] + 0.5 * parts[1] + parts[2]).item())
    cond = mt.condition(raw)
    torch.testing.assert_close(cond[:, :4].sum(1), torch.ones(2, 16, 16))
    assert cond[:, 4].min() >= 0 and cond[:, 4].max() <= 1
    torch.testing.assert_close(cond[:, 5:].norm(dim=1), torch.ones(2, 16, 16))
    keys = mt.compute_metrics(raw, batch)
    assert {"semantic/mIoU", "depth/abs_rel", "normals/median_angle"} <= set(keys)
    # DejaVuLoss works unchanged with the task's condition as its adapter
    loss_fn = DejaVuLoss(mt.channels, "bandstop", "forward", adapter=mt.condition, lpips_weight=0,
                         regenerator_kwargs={"init_scale": 0.02})  # moved from its zero start
    loss_fn(torch.rand(2, 3, 16, 16), raw).loss.backward()
    assert raw.grad.abs().sum() > 0


def test_bad_input():
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\)"):
        Segmentation(4).loss(torch.randn(1, 3, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long))
    with pytest.raises(KeyError, match="depth"):
        Depth().loss(torch.randn(1, 1, 8, 8), {"semantic": torch.zeros(1)})
    with pytest.raises(ValueError, match="unknown task"):
        create_task("edges")


def reference_band(mask: torch.Tensor, d: int) -> torch.Tensor:
    """Pixels of `mask` with a non-mask pixel (or the image's outside) within Chebyshev distance d."""
    h, w = mask.shape
    out = torch.zeros_like(mask)
    for i in range(h):
        for j in range(w):
            if mask[i, j]:
                win = mask[max(0, i - d):i + d + 1, max(0, j - d):j + d + 1]
                edge = i < d or j < d or i >= h - d or j >= w - d
                out[i, j] = edge or not bool(win.all())
    return out


def test_boundary_iou_matches_a_per_pixel_reference():
    g = torch.Generator().manual_seed(0)
    # blocky random labels, so classes have interiors and contours
    target = torch.randint(0, 3, (2, 4, 4), generator=g).repeat_interleave(5, 1).repeat_interleave(5, 2)
    pred = torch.roll(target, shifts=1, dims=2)
    pred[0, :3] = 2
    d = 1
    m = BoundaryIoU(3, dilation_ratio=d / (2 * 20**2) ** 0.5)
    m.update(pred, target)
    inter, union = torch.zeros(3), torch.zeros(3)
    for b in range(2):
        for c in range(3):
            p, t = reference_band(pred[b] == c, d), reference_band(target[b] == c, d)
            inter[c] += (p & t).sum()
            union[c] += (p | t).sum()
    assert float(m.compute()) == pytest.approx(float((inter / union).mean()), abs=1e-6)


def test_boundary_iou_sees_a_shifted_edge_that_miou_barely_sees():
    target = torch.zeros(1, 64, 64, dtype=torch.long)
    target[:, 8:56, 8:56] = 1
    shifted = torch.roll(target, shifts=2, dims=2)
    metrics = Segmentation(2).metrics()
    metrics.update(torch.nn.functional.one_hot(shifted, 2).permute(0, 3, 1, 2).float(), target)
    got = {k: float(v) for k, v in metrics.compute().items() if v.dim() == 0}
    assert got["mIoU"] > 0.85 and got["boundary_iou"] < 0.6
    ignored = target.clone()
    ignored[:, :, 30:] = 255  # ignore_index: the boundary there no longer counts
    m = BoundaryIoU(2, ignore_index=255)
    m.update(shifted, ignored)
    assert float(m.compute()) != pytest.approx(got["boundary_iou"])


# ------------------------------------------------------------------------------------ self-supervised depth
def test_warping_with_the_true_depth_and_pose_reproduces_the_target_frame():
    import numpy as np

    from dejavu.data.synthetic import render_scene, render_sequence
    from dejavu.tasks.reprojection import photometric_error, warp

    frames = render_sequence(0, 3, (96, 128))
    target = frames[1]
    assert np.array_equal(target["image"], render_scene(0, 3, (96, 128))["image"])  # the still scene, unchanged
    t = {k: torch.from_numpy(np.ascontiguousarray(v)).float() for k, v in target.items()}
    for source in (frames[0], frames[2]):
        pose = torch.from_numpy(np.linalg.inv(source["pose"]) @ target["pose"]).float()[None]
        image = torch.from_numpy(source["image"])[None]
        right, inside = warp(image, t["depth"][None], pose, t["intrinsics"])
        wrong, _ = warp(image, t["depth"][None] * 0.5, pose, t["intrinsics"])
        error = {name: float(photometric_error(x, t["image"][None])[inside].mean())
                 for name, x in (("right", right), ("wrong", wrong), ("still", image))}
        assert inside.float().mean() > 0.8
        assert error["right"] < 0.4 * error["wrong"] and error["right"] < 0.3 * error["still"], error


def test_minimum_reprojection_and_auto_masking_by_hand():
    from dejavu.tasks.reprojection import auto_mask, median_scaled, smoothness

    # 2 sources, 1x3 pixels: pixel 0 is explained by source 1; pixel 1 by nothing better than standing
    # still (a moving object or a static camera); pixel 2 is a tie with standing still
    reprojected = torch.tensor([[[[0.5, 0.3, 0.2]], [[0.1, 0.4, 0.9]]]])
    identity = torch.tensor([[[[0.6, 0.2, 0.2]], [[0.7, 0.25, 0.3]]]])
    best, mask = auto_mask(reprojected, identity)
    assert torch.allclose(best, torch.tensor([[[[0.1, 0.3, 0.2]]]])) and mask.tolist() == [[[[True, False, False]]]]
    flat = torch.ones(1, 1, 8, 8)
    assert smoothness(flat, torch.rand(1, 3, 8, 8)) == 0
    ramp = torch.arange(8.0).expand(1, 1, 8, 8) + 1
    edges = torch.zeros(1, 3, 8, 8)
    edges[..., 4:] = 1  # an image edge at column 4 excuses the ramp's step there, not the others
    assert smoothness(ramp, torch.zeros(1, 3, 8, 8)) > smoothness(ramp, edges) > 0
    pred, target = torch.full((2, 1, 4, 4), 2.0), torch.full((2, 1, 4, 4), 6.0)
    target[1] = 3.0
    assert torch.allclose(median_scaled(pred, target), target)


def test_synthetic_video_poses_and_the_selfsup_loss():
    from dejavu.data import SyntheticVideo
    from dejavu.tasks import SelfSupervisedDepth
    from dejavu.tasks.selfsup import PoseNet, pose_matrix

    item = SyntheticVideo(2, size=(48, 64))[1]
    assert item["sources"].shape == (2, 3, 48, 64) and item["source_poses"].shape == (2, 4, 4)
    assert torch.allclose(pose_matrix(torch.zeros(1, 3), torch.zeros(1, 3)), torch.eye(4)[None])
    r = pose_matrix(torch.tensor([[0.1, -0.2, 0.3]]), torch.tensor([[1.0, 2, 3]]))[0, :3, :3]
    assert torch.allclose(r @ r.T, torch.eye(3), atol=1e-6)
    assert torch.allclose(PoseNet()(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32))[:, :3, :3],
                          torch.eye(3).expand(2, 3, 3), atol=0.05)  # starts near the identity
    batch = {k: v[None] for k, v in item.items()}
    task = SelfSupervisedDepth(pose="known")

    def raw_for(depth):  # the raw output that decodes to `depth`
        lo, hi = 1 / task.max_depth, 1 / task.min_depth
        return torch.logit(((1 / depth) - lo) / (hi - lo), eps=1e-6)

    right, wrong = task.loss(raw_for(batch["depth"]), batch), task.loss(raw_for(batch["depth"] * 0.5), batch)
    assert right < 0.6 * wrong
    assert torch.allclose(task.decode(raw_for(batch["depth"])), batch["depth"], rtol=1e-3)
    with pytest.raises(KeyError, match="no 'sources' entry"):
        task.loss(raw_for(batch["depth"]), {"image": batch["image"], "intrinsics": batch["intrinsics"]})
    # evaluation is median-scaled: a prediction right up to scale scores perfectly
    metrics = task.compute_metrics(raw_for(batch["depth"] * 0.3), batch)
    assert metrics["abs_rel"] < 1e-3 and metrics["delta1"] == 1.0


def test_figures_carry_a_legend_of_the_classes():
    """figure.png names the class of each colour, where the task names its classes."""
    from dejavu.training.figures import legend_handles

    seg = Segmentation(3, class_names=["road", "car", "sky"])
    handles = legend_handles(MultiTask([Depth(), seg]), palette=[(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    assert [h.get_label() for h in handles] == ["road", "car", "sky"]
    assert tuple(handles[1].get_facecolor()[:3]) == (0.0, 1.0, 0.0)
    assert legend_handles(Depth()) == [] and legend_handles(Segmentation(3)) == []  # nothing to name


@pytest.mark.parametrize("name,kwargs", [("segmentation", {"num_classes": 4}), ("depth", {}), ("normals", {}),
                                         ("panoptic", {"num_classes": 4, "things": [2, 3]}),
                                         ("selfsup_depth", {"pose": "known"}), ("denoising", {}),
                                         ("masked", {})])
def test_a_task_names_the_files_it_writes_and_draws_its_answers(name, kwargs):
    """Each task's prediction files are the ones it writes, and its view of an answer is an RGB image."""
    task = create_task(name, **kwargs)
    value = task.predicted_map(torch.randn(1, task.channels, 8, 8))[0]
    for raw_ids in (False, True):
        assert list(task.predicted_files(value, "x", None, raw_ids)) == task.prediction_files("x", raw_ids)
    view = task.view(value)
    assert view.shape == (8, 8, 3) and view.min() >= 0 and view.max() <= 1


def test_a_multitask_is_asked_through_its_subtasks():
    mt = MultiTask([Segmentation(3), Depth(), Normals()])
    raw = torch.randn(2, 7, 8, 8)
    assert [t.name for t in mt.subtasks] == ["semantic", "depth", "normals"] and mt.head_channels == [3, 1, 3]
    assert [p.shape[1] for p in mt.split(raw)] == [3, 1, 3]
    assert Depth().subtasks[0].name == "depth" and Depth().head_channels == 1 and Depth().split(raw) == [raw]
