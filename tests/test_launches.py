"""DejaVu's fixed cost in kernel launches and host syncs, counted on any device. The operator counts are
the CPU proxy of a GPU's launch overhead: on a GPU, the DejaVu loss costs about its launches, not its
arithmetic."""

import pytest
import torch
import torch.nn.functional as F

from benchmarks.bench import LOSS_VARIANTS, RANDOM_BLOCKS, VARIANTS, OpCounter, TrainStep
from dejavu import DejaVuLoss
from dejavu.checks import AsyncCheck
from dejavu.losses import NonFiniteError, _resize
from dejavu.models import create_model
from dejavu.perceptual import LPIPS

# at 2x19x128x128 (regeneration at 32x32), forward and backward; before: CRM-F 70 bare and 273 with
# LPIPS and checks, CRM-R 470 bare and 673 (commit 26d819d, counted with parameter gradients accumulating)
BUDGETS = {"CRM-F, LPIPS": 150, "CRM-R 20, bare": 250, "CRM-R 20, LPIPS": 400}


@pytest.mark.parametrize("variant", sorted(BUDGETS))
def test_loss_launches_within_budget_and_never_syncs(variant):
    torch.manual_seed(0)
    loss_fn = DejaVuLoss(19, **{"redaction": RANDOM_BLOCKS, "lpips_weights": "random", **LOSS_VARIANTS[variant]})
    x, p = torch.rand(2, 3, 128, 128), torch.randn(2, 19, 128, 128, requires_grad=True)
    loss_fn(x, p).loss.backward()
    for t in (p, *loss_fn.parameters()):
        t.grad = None
    with OpCounter() as ops:
        loss_fn(x, p).loss.backward()
    assert ops.kernels <= BUDGETS[variant], ops.counts.most_common()
    assert ops.syncs == 0, ops.counts


@pytest.mark.parametrize("variant", ["CRM-F 2 stages, random blocks", "CRM-R 20 steps, random blocks"])
def test_a_default_training_step_makes_no_host_sync(variant):
    """Network, task loss, DejaVu loss with its checks and LPIPS, backward, the network's SGD and the CRM's Adam."""
    torch.manual_seed(0)
    step = TrainStep(create_model("unet", 5, width=8, depth=2), 5, VARIANTS[variant], torch.device("cpu"),
                     amp=False, lpips=True)
    x, y = torch.rand(2, 3, 64, 64), torch.randint(0, 5, (2, 64, 64))
    step(x, y)
    with OpCounter() as ops:
        step(x, y)
    assert ops.syncs == 0, ops.counts


def test_cell_mean_is_average_pooling():
    """The downsampling's reshape-mean gives avg_pool2d's values and gradients, in either memory layout."""
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(2, 5, 32, 48).contiguous(memory_format=layout).requires_grad_()
        ours = _resize(x, (8, 12))
        torch.testing.assert_close(ours, F.avg_pool2d(x, 4))
        (g,) = torch.autograd.grad((ours * ours).sum(), x)
        (ref,) = torch.autograd.grad((F.avg_pool2d(x, 4) ** 2).sum(), x)
        torch.testing.assert_close(g, ref)


def test_lpips_loss_is_the_mean_distance_with_the_regeneration_s_gradient():
    lp = LPIPS("alex", "random")
    for shape in [(3, 3, 48, 40), (2, 3, 16, 24)]:  # the second is upsampled to AlexNet's least size
        x, y = torch.rand(shape, requires_grad=True), torch.rand(shape)
        reference = lp(x, y).mean()  # LPIPS.forward, lpips.LPIPS's distance (test_losses)
        (g_ref,) = torch.autograd.grad(reference, x)
        ours = lp.loss(x, y)
        (g,) = torch.autograd.grad(ours, x)
        torch.testing.assert_close(ours, reference)
        torch.testing.assert_close(g, g_ref)


class Event:
    """A CUDA event stand-in: its copy lands when the test says so."""

    def __init__(self) -> None:
        self.done = False

    def query(self) -> bool:
        return self.done

    def synchronize(self) -> None:
        self.done = True


def test_async_check_reports_an_entry_when_it_arrives():
    seen = []
    checks = AsyncCheck(lambda values, name: seen.append((name, values)), max_pending=2)
    late = [Event(), Event()]
    checks.pending.extend([(torch.tensor([1.0]), late[0], ("a",)), (torch.tensor([2.0]), late[1], ("b",))])
    checks.poll()
    assert seen == []  # nothing has landed: nothing waited for
    late[0].done = True
    checks.poll()
    assert seen == [("a", [1.0])]
    checks.pending.extend([(torch.tensor([3.0]), Event(), ("c",)), (torch.tensor([4.0]), Event(), ("d",))])
    checks.poll()  # three in flight, two allowed: the oldest is waited for
    assert [name for name, _ in seen] == ["a", "b"]
    checks.poll(wait=True)
    assert [name for name, _ in seen] == ["a", "b", "c", "d"]


def test_a_late_bad_input_names_its_call():
    """On a GPU a NaN image is found a call or two later; the message says which call had it."""
    loss_fn = DejaVuLoss(4, "checkerboard", "forward", lpips_weight=0)
    image, pred = torch.rand(2, 3, 32, 32), torch.randn(2, 4, 32, 32)
    loss_fn(image, pred)
    stats = torch.tensor([float("nan"), 1.0])
    loss_fn.checks.pending.append((stats, Event(), ("image", loss_fn.calls)))  # call 1's image, still in flight
    loss_fn(image, pred)
    loss_fn.checks.pending[0][1].done = True
    with pytest.raises(NonFiniteError, match=r"image contains NaN or Inf values \(at call 1 of this loss, 2 calls ago"):
        loss_fn(image, pred)


@pytest.mark.parametrize("check_finite", [True, "sync"])
def test_bad_inputs_raise_at_the_call_on_a_cpu(check_finite):
    loss_fn = DejaVuLoss(4, "checkerboard", "forward", lpips_weight=0, check_finite=check_finite)
    image, pred = torch.rand(2, 3, 32, 32), torch.randn(2, 4, 32, 32)
    with pytest.raises(NonFiniteError, match=r"prediction contains NaN or Inf values$"):
        loss_fn(image, pred.index_fill(2, torch.tensor([3]), float("inf")))
    with pytest.raises(ValueError, match=r"spans \[0, 255\].*value_range=\(0, 255\)"):
        loss_fn(image * 0 + torch.linspace(0, 255, 32), pred)
    with pytest.raises(ValueError, match="check_finite must be True, False or 'sync'"):
        DejaVuLoss(4, check_finite="later")
