"""XTC, MTPSL's cross-task consistency: which task pairs it compares, what it trains, what it reads of the
network, and the SegNet-XTC runs (full and partial labels, with and without DejaVu)."""

import json

import pytest
import torch
import torch.nn.functional as F
import yaml

from dejavu.extensions.xtc import CrossTaskConsistency, task_pairs
from dejavu.models import create_model
from dejavu.tasks import create_task
from dejavu.training.lightning_cli import DejaVuCLI
from dejavu.training.module import DejaVuModule

TASKS = [{"name": "segmentation"}, {"name": "depth"}, {"name": "normals"}]
TASK = {"name": "multitask", "tasks": [{"name": "segmentation", "num_classes": 5}, *TASKS[1:]]}
TINY = {"widths": [16, 32, 64, 128], "convs": [2, 2, 2, 2]}  # segnet_mtl's default trunk


def batch(labelled=None) -> dict:
    torch.manual_seed(0)
    out = {"image": torch.rand(2, 3, 32, 32), "semantic": torch.randint(0, 5, (2, 32, 32)),
           "depth": torch.rand(2, 1, 32, 32) + 0.5, "normals": F.normalize(torch.randn(2, 3, 32, 32), dim=1)}
    if labelled is not None:
        out["labelled"] = {k: torch.tensor(v) for k, v in zip(("semantic", "depth", "normals"), labelled, strict=True)}
    return out


def xtc_loss(b: dict, **kwargs) -> tuple[torch.Tensor, CrossTaskConsistency, DejaVuModule]:
    module = DejaVuModule({"name": "segnet_mtl"}, TASK, auxiliaries=[{"name": "xtc", **TINY, **kwargs}])
    logged = {}
    module.log_dict = lambda values, **kw: logged.update(values)
    module.log = lambda *a, **kw: None
    module.training_step(b, 0)
    return logged["train/xtc"], module.auxiliaries["xtc"], module


def test_pairs_are_every_ordered_pair_or_unlabelled_source_to_labelled_target():
    assert [(s, t) for s, t, _ in task_pairs(None, 3)] == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    labelled = torch.tensor([[True, False, False], [False, True, True], [True, True, True]])
    pairs = {(s, t): images.tolist() for s, t, images in task_pairs(labelled, 3)}
    assert pairs == {(0, 1): [False, True, False], (0, 2): [False, True, False], (1, 0): [True, False, False],
                     (2, 0): [True, False, False]}  # image 2, fully labelled, has no unlabelled source


def test_only_the_compared_pairs_film_parameters_are_trained():
    """Image 0 labels the segmentation alone, image 1 nothing: pairs depth->seg and normals->seg, places 2
    and 4 among the six ordered pairs."""
    loss, xtc, _ = xtc_loss(batch([[True, False], [False, False], [False, False]]))
    loss.backward()
    gamma = xtc.mapping.levels[0][0].gamma.grad
    assert loss > 0 and [i for i in range(6) if gamma[i].abs().sum() > 0] == [2, 4]


def test_fully_labelled_images_compare_nothing_under_partial_labels_and_everything_under_full():
    assert xtc_loss(batch([[True, True], [True, True], [True, True]]))[0] == 0
    full, _, _ = xtc_loss(batch())
    none, _, _ = xtc_loss(batch(), weight=0.0)
    assert full > 0 and none == 0


def test_the_representation_is_read_without_gradients_or_statistics():
    _, xtc, module = xtc_loss(batch())
    net = module.net
    stats = [b.clone() for name, b in net.named_buffers() if "running" in name]
    image = torch.rand(2, 3, 32, 32)
    feature = xtc.representation(net, image)
    assert feature.shape == (2, 128, 2, 2) and not feature.requires_grad
    assert all(torch.equal(a, b) for a, b in zip(stats, [b for n, b in net.named_buffers() if "running" in n],
                                                 strict=True))
    with pytest.raises(ValueError, match=r"module 'trunk', which SegNetMTL lacks; give feature_module"):
        xtc_loss(batch(), feature_module="trunk")
    with pytest.raises(ValueError, match=r"mapping gives \(256, 1, 1\) but the shared representation is \(128, 2, 2\)"):
        xtc_loss(batch(), widths=[16, 32, 64, 128, 256], convs=[1, 1, 1, 1, 1])


def test_xtc_needs_several_tasks():
    with pytest.raises(ValueError, match="xtc compares the predictions of two or more tasks"):
        DejaVuModule({"name": "unet"}, {"name": "segmentation", "num_classes": 3}, auxiliaries=[{"name": "xtc"}])


def test_segnet_at_mtpsls_width_is_its_size():
    """MTPSL's SegNet (VGG-16's widths, 2-2-3-3-3 convolutions and their mirror): 24,981,069 parameters in
    its code (its convolutions carry biases before batch norm; ours do not)."""
    net = create_model("segnet_mtl", [13, 1, 3], widths=[64, 128, 256, 512, 512], convs=[2, 2, 3, 3, 3])
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(24_981_069, rel=0.005)
    xtc = CrossTaskConsistency.for_task(create_task("multitask", tasks=[{"name": "segmentation", "num_classes": 13},
                                                                       {"name": "depth"}, {"name": "normals"}]))
    assert xtc.mapping.levels[-1][-1].conv.out_channels == 512


@pytest.mark.parametrize("partial", [None, "random"], ids=["full", "partial"])
@pytest.mark.parametrize("dejavu", [False, True], ids=["baseline", "dejavu"])
def test_segnet_xtc_trains_two_steps(tmp_path, partial, dejavu):
    config = {"seed_everything": 0,
              "model": {"network": {"name": "segnet_mtl"},
                        "task": {"name": "multitask", "tasks": TASKS}, "optim": {"name": "adamw", "lr": 0.001},
                        "auxiliaries": [{"name": "xtc", **TINY}],
                        **({"dejavu": {"redaction": {"name": "checkerboard", "block_size": 8}, "regenerator": "forward",
                                       "regenerator_kwargs": {"stages": 2, "width": 8}, "lpips_weight": 0.0}}
                           if dejavu else {})},
              "data": {"dataset": "synthetic", "size": [32, 32], "batch_size": 2, "train_length": 4, "val_length": 2,
                       "partial_labels": partial},
              "trainer": {"max_epochs": 1, "enable_progress_bar": False, "enable_model_summary": False},
              "figure_images": 2}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    DejaVuCLI(args=["fit", "--config", str(path), "--run_dir", str(tmp_path / "run")])
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["dejavu"] == dejavu and "val/semantic/mIoU" in metrics["last"]["val"]
