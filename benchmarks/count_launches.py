"""Kernel-launching operators and host syncs of the DejaVu loss and of an own-loop training step, for
whichever version of the library is importable: the CPU proxy of a GPU's launch overhead.

    python benchmarks/count_launches.py                                  # this checkout
    PYTHONPATH=<another checkout>/src python benchmarks/count_launches.py  # an older version

It counts with ``benchmarks/opcount.py``'s ``OpCounter``, which imports nothing of dejavu, so older
versions are counted the same way: views, metadata and allocations are left out; ``_local_scalar_dense``,
``nonzero`` and ``is_nonzero`` are host syncs. Gradients are cleared (``set_to_none``) before each
counted call, as a training step clears them.
"""

import json

import torch
import torch.nn.functional as F
from opcount import OpCounter  # beside this script

from dejavu.losses import DejaVuLoss
from dejavu.models import create_model

BLOCKS = {"name": "random_blocks", "block_size": 32, "threshold": 0.4}


def counted(call, tensors) -> tuple[int, int]:
    for _ in range(3):  # two warm-up calls, then the counted one
        for t in tensors():
            t.grad = None
        with OpCounter() as ops:
            call()
    return ops.kernels, ops.syncs


rows = {}
x, p = torch.rand(2, 3, 128, 128), torch.randn(2, 19, 128, 128, requires_grad=True)
for name, kw in {"CRM-F, bare": dict(regenerator="forward", lpips_weight=0.0, check_finite=False),
                 "CRM-F, LPIPS and checks": dict(regenerator="forward"),
                 "CRM-R 20, bare": dict(regenerator="recursive", lpips_weight=0.0, check_finite=False),
                 "CRM-R 20, LPIPS and checks": dict(regenerator="recursive")}.items():
    torch.manual_seed(0)
    loss_fn = DejaVuLoss(19, redaction=BLOCKS, lpips_weights="random", **kw)
    rows[name + ", 2x19x128x128"] = counted(lambda fn=loss_fn: fn(x, p).loss.backward(),
                                            lambda fn=loss_fn: [p, *fn.parameters()])
for regenerator in ("forward", "recursive"):
    torch.manual_seed(0)
    net = create_model("unet", 5, width=8, depth=2)
    loss_fn = DejaVuLoss(5, redaction=BLOCKS, regenerator=regenerator, lpips_weights="random")
    opts = [torch.optim.SGD(net.parameters(), lr=0.0, momentum=0.9), loss_fn.regenerator_optimizer(lr=0.0)]
    batch = torch.rand(2, 3, 64, 64), torch.randint(0, 5, (2, 64, 64))

    def step(net=net, loss_fn=loss_fn, opts=opts, batch=batch) -> None:
        image, labels = batch
        raw = net(image)
        (F.cross_entropy(raw, labels) + loss_fn(image, raw).loss).backward()
        for opt in opts:
            opt.step()

    rows[f"training step, {regenerator}, UNet 8/2, 2x3x64x64"] = counted(
        step, lambda net=net, loss_fn=loss_fn: [*net.parameters(), *loss_fn.parameters()])
print(json.dumps({k: {"operators": n, "host_syncs": s} for k, (n, s) in rows.items()}, indent=1))
