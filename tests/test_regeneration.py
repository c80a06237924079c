import pytest
import torch
import torch.nn.functional as F

from dejavu import DejaVuLoss, ForwardCRM, RecursiveCRM
from dejavu.models import create_model
from dejavu.redaction import RandomBlocks
from dejavu.tasks import Segmentation


def test_shapes_and_step_counts():
    r, c = torch.rand(2, 3, 24, 20), torch.rand(2, 6, 24, 20)
    for cond in ("concat", "multiply"):
        assert ForwardCRM(6, stages=1, width=8, conditioning=cond)(r, c).shape == (1, 2, 3, 24, 20)
        ys = RecursiveCRM(6, steps=5, width=8, conditioning=cond)(r, c)
        assert len(ys) == 5 and all(y.shape == (2, 3, 24, 20) for y in ys)


@pytest.mark.parametrize("crm,kw", [("forward", {"stages": 2}), ("forward", {"stages": 4}),
                                    ("recursive", {"steps": 1}), ("recursive", {"steps": 5}),
                                    ("recursive", {"steps": 20})])
@pytest.mark.parametrize("width", [8, 64])
def test_a_fresh_crm_starts_sane(crm, kw, width):
    """At initialisation every step regenerates the redacted input exactly, so the network gets no
    gradient from an untrained CRM; after one step of the CRM's own optimiser it gets one, non-zero
    and no larger than the task loss's."""
    task = Segmentation(6)
    for seed in range(3):
        torch.manual_seed(seed)
        net = create_model("unet", 6, width=8, depth=2)
        loss_fn = DejaVuLoss(6, "random_blocks", crm, regenerator_kwargs={**kw, "width": width}, lpips_weight=0,
                             adapter=task.condition, scale=1.0)
        image, labels = torch.rand(4, 3, 32, 32), torch.randint(0, 6, (4, 32, 32))
        logits = net(image)
        (g_task,) = torch.autograd.grad(task.loss(logits, labels), logits, retain_graph=True)
        out = loss_fn(image, logits, generator=torch.Generator().manual_seed(seed))
        assert all(torch.equal(step, out.redacted) for step in out.steps)
        opt = loss_fn.regenerator_optimizer()
        logits.retain_grad()
        out.loss.backward(retain_graph=True)
        assert logits.grad.abs().max() == 0
        opt.step()
        out = loss_fn(image, logits, generator=torch.Generator().manual_seed(seed))
        (g_regen,) = torch.autograd.grad(out.loss, logits)
        assert 0 < g_regen.norm() <= g_task.norm()


def test_recursive_steps_are_euler_steps():
    """I[k+1] = I[k] + f(I[k]) / T: one step moves the image by f / T, and the projection's gradient
    stays of the same size for 1 and 20 steps (a plain sum of the steps' corrections made it ~T times
    larger, and momentum SGD at 0.01 diverged on it)."""
    r, c = torch.rand(2, 3, 16, 16), torch.rand(2, 4, 16, 16)
    norms = []
    for steps in (1, 20):
        torch.manual_seed(0)
        crm = RecursiveCRM(4, steps=steps, width=8, init_scale=0.02, checkpoint=False)
        fixed = crm.condition_conv(c)
        f = crm.head(crm.act(crm.norm(crm.image_conv(r) + fixed)))
        torch.testing.assert_close(crm.step(r, c, fixed), r + f / steps)
        F.mse_loss(crm(r, c)[-1], torch.zeros_like(r)).backward()
        norms.append(crm.head.weight.grad.norm().item())
    assert 0.5 < norms[1] / norms[0] < 2, norms


def test_recursive_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = RecursiveCRM(4, steps=5, width=8, norm=True, checkpoint=False)
    ckpt = RecursiveCRM(4, steps=5, width=8, norm=True, checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    r = torch.rand(2, 3, 16, 16)
    grads = []
    for crm in (plain, ckpt):
        c = torch.rand(2, 4, 16, 16, generator=torch.Generator().manual_seed(1), requires_grad=True)
        crm(r, c).square().mean().backward()
        grads.append((c.grad, crm.head.weight.grad))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("redacted_grad", [False, True])
def test_fused_steps_equal_autograd_through_the_step(redacted_grad):
    """The norm-free CRM-R's one-node steps (EulerSteps, hand-written backward) give the values and
    every gradient that autograd gives through RecursiveCRM.step, the block's readable definition."""
    torch.manual_seed(0)
    crm = RecursiveCRM(4, steps=5, width=6, init_scale=0.3).double()
    assert crm.fused and not RecursiveCRM(4, norm=True).fused and not RecursiveCRM(4, conditioning="multiply").fused
    r = torch.rand(2, 3, 8, 10, dtype=torch.float64, requires_grad=redacted_grad)
    c = torch.rand(2, 4, 8, 10, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(5, 2, 3, 8, 10, dtype=torch.float64)
    results = []
    for fused in (True, False):
        crm.zero_grad()
        r.grad = c.grad = None
        if fused:
            out = crm(r, c)
        else:
            fixed, image, steps = crm.condition_conv(c), r, []
            for _ in range(5):
                image = crm.step(image, c, fixed)
                steps.append(image)
            out = torch.stack(steps)
        (out * weight).sum().backward()
        results.append([out, c.grad, r.grad, *(p.grad for p in crm.parameters())])
    for a, b in zip(*results, strict=True):
        if a is None or b is None:
            assert a is b and not redacted_grad
        else:
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_fused_steps_under_autocast():
    """Under bfloat16 autocast the fused steps run in bfloat16 and their gradients come back in float32."""
    torch.manual_seed(0)
    crm = RecursiveCRM(4, steps=4, width=8, init_scale=0.3)
    r, c = torch.rand(2, 3, 16, 16), torch.rand(2, 4, 16, 16, requires_grad=True)
    reference = crm(r, c)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = crm(r, c)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference, atol=0.05, rtol=0.05)
    out.float().square().mean().backward()
    assert c.grad.dtype == torch.float32 and crm.head.weight.grad.dtype == torch.float32
    assert torch.isfinite(crm.head.weight.grad).all() and crm.head.weight.grad.abs().sum() > 0


def test_default_width_follows_the_condition():
    assert ForwardCRM(6).head.in_channels == 12 and RecursiveCRM(11).head.in_channels == 11
    assert ForwardCRM(100).head.in_channels == 64


def test_stage_count_sets_depth():
    convs = [m for m in ForwardCRM(4, stages=3).modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 2 * 3 + 1


@pytest.mark.parametrize("norm", [True, False])
def test_recursive_split_convolution_equals_concatenation(norm):
    """Precomputing the condition's half of the first conv computes exactly f([I_k, cond])."""
    torch.manual_seed(0)
    crm = RecursiveCRM(4, steps=3, width=8, init_scale=0.02, norm=norm).eval()
    r, c = torch.rand(2, 3, 16, 16), torch.rand(2, 4, 16, 16)
    w = torch.cat([crm.image_conv.weight, crm.condition_conv.weight], dim=1)
    image, expected = r, []
    for _ in range(3):
        h = F.conv2d(torch.cat([image, c], 1), w, padding=1)
        image = image + crm.head(crm.act(crm.norm(h))) / 3
        expected.append(image)
    for a, b in zip(crm(r, c), expected, strict=True):
        torch.testing.assert_close(a, b)


def toy_batch(n: int, g: torch.Generator, size: int = 32, classes: int = 4):
    """Images painted from random rectangle label maps, one colour per class, plus mild noise."""
    labels = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        for k in range(1, classes):
            y, x, h, w = torch.randint(0, size - 8, (4,), generator=g).tolist()
            labels[i, y:y + 8 + h // 2, x:x + 8 + w // 2] = k
    palette = torch.tensor([[0.1, 0.2, 0.3], [0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.9, 0.9, 0.2]])
    image = palette[labels].permute(0, 3, 1, 2) + 0.02 * torch.randn(n, 3, size, size, generator=g)
    onehot = F.one_hot(labels, classes).permute(0, 3, 1, 2).float()
    return image, onehot


@pytest.mark.parametrize("crm", [ForwardCRM(4, stages=2, width=32), RecursiveCRM(4, steps=4, width=32)],
                         ids=["forward", "recursive"])
def test_crm_uses_the_condition(crm):
    """Trained on informative predictions, a CRM regenerates far better from them than from shuffled ones."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    redact = RandomBlocks(8, 0.5)
    opt = torch.optim.Adam(crm.parameters(), lr=3e-3)
    for _ in range(300):
        image, cond = toy_batch(16, g)
        loss = F.mse_loss(crm(redact(image, generator=g), cond)[-1], image)
        opt.zero_grad()
        loss.backward()
        opt.step()
    crm.eval()
    image, cond = toy_batch(64, g)
    redacted = redact(image, generator=g)
    with torch.no_grad():
        informed = F.mse_loss(crm(redacted, cond)[-1], image).item()
        shuffled = F.mse_loss(crm(redacted, cond.roll(1, dims=0))[-1], image).item()
    assert informed < 0.5 * shuffled, (informed, shuffled)
    # the same, seen through DejaVuLoss.reliance: the trained CRM needs its condition
    loss_fn = DejaVuLoss(4, redact, crm, adapter="identity", lpips_weight=0, scale=1.0)
    r = loss_fn.reliance(image, cond, target_condition=cond, generator=g)
    assert r["reliance"] > 0.5 and r["regen_mse_gt"] == r["regen_mse"] < r["regen_mse_blank"], r


@pytest.mark.parametrize("call,match", [
    (lambda: ForwardCRM(0), "pred_channels"),
    (lambda: ForwardCRM(3, stages=0), "stages"),
    (lambda: RecursiveCRM(3, steps=0), "steps"),
    (lambda: RecursiveCRM(3, conditioning="add"), "conditioning"),
    (lambda: RecursiveCRM(3, norm="batch"), "norm must be True"),
    (lambda: ForwardCRM(3, init_scale=-1), "init_scale"),
    (lambda: ForwardCRM(3)(torch.rand(1, 3, 8, 8), torch.rand(1, 4, 8, 8)), r"\(B, 3, H, W\)"),
    (lambda: ForwardCRM(3)(torch.rand(2, 3, 8, 8), torch.rand(1, 3, 8, 8)), "batch"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
