"""The DejaVu core at work, in one training loop of your own (no training framework).

A tiny segmentation network learns to label coloured rectangles; DejaVuLoss adds the regeneration
signal. Runs in seconds on a CPU: ``python examples/quickstart.py``.
"""

import torch
import torch.nn.functional as F
from torch import nn

import dejavu

torch.manual_seed(0)
PALETTE = torch.tensor([[0.1, 0.2, 0.3], [0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.9, 0.9, 0.2]])


def batch(n: int = 8, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        for k in range(1, 4):
            y, x = torch.randint(0, size - 16, (2,)).tolist()
            labels[i, y:y + 16, x:x + 16] = k
    image = PALETTE[labels].permute(0, 3, 1, 2) + 0.05 * torch.randn(n, 3, size, size)
    return image.clamp(0, 1), labels


net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                    nn.Conv2d(16, 4, 1))
# The paper's Cityscapes setting (random blocks b=32 t=0.4, CRM-R 20 steps), made small for a CPU;
# lpips_weight=0 so that this example runs offline; online, drop it and torchvision fetches LPIPS's AlexNet once.
dejavu_loss = dejavu.DejaVuLoss.from_preset("cityscapes", pred_channels=4, lpips_weight=0,
                                            redaction={"name": "random_blocks", "block_size": 8, "threshold": 0.4},
                                            regenerator_kwargs={"steps": 5, "width": 16})
opt = torch.optim.Adam([*net.parameters(), *dejavu_loss.parameters()], lr=3e-3)

for step in range(1, 101):
    image, labels = batch()
    logits = net(image)
    task = F.cross_entropy(logits, labels)
    regen = dejavu_loss(image, logits)
    opt.zero_grad()
    (task + regen.loss).backward()
    opt.step()
    if step % 25 == 0:
        print(f"step {step:3d}  task loss {task.item():.3f}  regeneration MSE {regen.mse.item():.4f}")

image, labels = batch(32)
with torch.no_grad():
    accuracy = (net(image).argmax(1) == labels).float().mean().item()
print(f"pixel accuracy on fresh images: {accuracy:.3f}")
print(f"inference model: {sum(p.numel() for p in net.parameters())} parameters (the CRM is not part of it)")
