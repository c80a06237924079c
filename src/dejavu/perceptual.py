"""Perceptual and structural distances between images: LPIPS (DejaVu's perceptual term) and SSIM
(its optional structural term).

:class:`LPIPS` is the ``lpips`` package's network and calibration, run faster: ``forward`` puts both
images through the backbone in one pass, and ``loss`` folds the normalisation and calibration into layer
norms. Both read ``lpips``' layout (``scaling_layer``, ``net``, ``lins``, each ``lin.model``): this
module is the only one that does, pyproject pins ``lpips`` to the 0.1 series it is tested on, and
``tests/test_losses.py`` pins both against ``lpips.LPIPS.forward``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .weights import read_tensors, torchvision_state_dict

__all__ = ["LPIPS", "structural_similarity"]


class LPIPS(nn.Module):
    """LPIPS perceptual distance from the ``lpips`` package, its backbone's ImageNet weights fetched
    by torchvision.

    ``weights``: a local state dict file of the torchvision backbone (e.g. ``alexnet-owt-7be5be79.pth``),
    which wins; ``None`` takes torchvision's ``IMAGENET1K_V1`` weights from the torch hub cache
    (``torch.hub.get_dir()/checkpoints``), downloaded there on first use unless ``offline`` (or
    ``DEJAVU_OFFLINE=1``, see :mod:`dejavu.weights`); ``"random"`` gives a random backbone, for tests
    and timing only. The linear calibration layers ship with ``lpips``.

    ``forward(x, y)`` takes images in ``[0, 1]``, shape ``(B, 3, H, W)``, and returns ``(B,)``.
    Images with a side under 32 pixels are upsampled (bilinear) to 32 first: the backbone's strides
    need that much.

    Raises:
        FileNotFoundError: a missing ``weights`` file, or weights neither cached nor downloadable; the
            message names the file, the cache and the ways out.
        ValueError: a ``weights`` file that is not that backbone's state dict.
    """

    def __init__(self, net: str = "alex", weights: str | Path | None = None, offline: bool | None = None) -> None:
        super().__init__()
        import lpips  # imported here: it pulls in torchvision, which `import dejavu` does not need

        if net not in _TV_WEIGHTS:
            raise ValueError(f"LPIPS: net must be one of {sorted(_TV_WEIGHTS)}, got {net!r}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # use_dropout must stay True: the shipped calibration weights are keyed for that layout
            # (with False they silently fail to load). Dropout is inert: this module is always in eval.
            self.model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False).eval()
        if weights != "random":
            self._load_backbone(net, *_backbone_state(net, weights, offline))
        self.model.requires_grad_(False)
        # for `loss`: lpips's scaling layer and the [0, 1] -> [-1, 1] map as one affine map, and each layer's
        # calibration weights w as the layer-norm weights sqrt(w / C) of [f, -f] (zero for the -f half)
        scaling = self.model.scaling_layer
        self.register_buffer("gain", 2 / scaling.scale, persistent=False)
        self.register_buffer("offset", (-1 - scaling.shift) / scaling.scale, persistent=False)
        for i, lin in enumerate(self.model.lins):
            w = lin.model[-1].weight.detach().flatten().clamp_min(0)
            self.register_buffer(f"norm_weight{i}", torch.cat((w / len(w), torch.zeros_like(w))).sqrt(),
                                 persistent=False)

    def _load_backbone(self, net: str, state: dict[str, Tensor], source: str) -> None:
        mine = self.model.net.state_dict()
        # lpips names layer i of torchvision's `features` as `sliceK.i`; match on that index.
        by_index = {k.split(".", 1)[1]: k for k in mine}
        mapped = {by_index[k[len("features."):]]: v for k, v in state.items()
                  if k.startswith("features.") and k[len("features."):] in by_index}
        if len(mapped) != len(mine):
            raise ValueError(f"LPIPS: {source} is not a torchvision {net} state dict "
                             f"(matched {len(mapped)} of {len(mine)} backbone tensors)")
        self.model.net.load_state_dict(mapped)

    def train(self, mode: bool = True) -> LPIPS:
        return super().train(False)  # a fixed metric: never in training mode

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        # lpips.LPIPS.forward, with both images in one pass through the backbone: half the calls,
        # which is most of LPIPS's cost at the small sizes DejaVu regenerates at
        m, n = self.model, x.shape[0]
        x, y = _lpips_size(x, y)
        features = m.net(m.scaling_layer(torch.cat((x, y.to(x.dtype))) * 2 - 1))
        distance = 0
        for lin, f in zip(m.lins, features, strict=True):
            f = f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)  # lpips.normalize_tensor
            distance = distance + lin((f[:n] - f[n:]) ** 2).mean(dim=(2, 3))
        return distance.flatten()

    def loss(self, x: Tensor, target: Tensor) -> Tensor:
        """``forward(x, target).mean()``, differentiable in ``x`` only, in half the kernels.

        The loss of a regeneration against its fixed target: each layer's channel normalisation,
        difference and calibrated sum take 11 kernels forward and backward instead of about 30.
        Normalising ``f`` over its ``C`` channels to unit length is layer-normalising ``[f, -f]``,
        whose mean is 0 by construction (``LN([f, -f])[:C] = sqrt(C) f / |f|``): one fused kernel
        each way, with the calibration weights as its weights.
        """
        n = x.shape[0]
        x, target = _lpips_size(x, target)
        images = torch.cat((x, target.detach().to(x.dtype)))
        total = None
        for i, f in enumerate(self.model.net(torch.addcmul(self.offset, images, self.gain))):
            f = f.permute(0, 2, 3, 1)  # layer norm normalises the last dimension
            c, pixels = f.shape[-1], n * f.shape[1] * f.shape[2]
            # eps: lpips divides by |f| + 1e-10; this divides by sqrt(|f|^2 + 1e-20)
            z = F.layer_norm(torch.cat((f, -f), dim=-1), (2 * c,), getattr(self, f"norm_weight{i}"), eps=1e-20 / c)
            layer = F.mse_loss(z[:n], z[n:].detach(), reduction="sum")
            total = layer / pixels if total is None else torch.add(total, layer, alpha=1 / pixels)
        return total


_TV_WEIGHTS = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights", "squeeze": "SqueezeNet1_1_Weights"}


def _lpips_size(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    short = min(x.shape[-2:])
    if short < 32:  # AlexNet's strides and pools need a side of at least 31 pixels
        x, y = (F.interpolate(t, scale_factor=32 / short, mode="bilinear", align_corners=False) for t in (x, y))
    return x, y


def _backbone_state(net: str, weights: str | Path | None, offline: bool | None) -> tuple[dict[str, Tensor], str]:
    """The backbone's state dict and where it came from: the local file, else torchvision's loader."""
    if weights is not None:
        return read_tensors(weights, "LPIPS: weights file"), str(weights)
    import torchvision.models as tvm

    member = getattr(tvm, _TV_WEIGHTS[net]).IMAGENET1K_V1
    ways_out = ("lpips_weights=PATH", "switch LPIPS off with lpips_weight=0 (lpips_weights='random' gives a random "
                "backbone, for tests and timing only)")
    return torchvision_state_dict(member, f"LPIPS ({net!r} backbone)", ways_out, offline), member.url


def structural_similarity(x: Tensor, y: Tensor) -> Tensor:
    """Mean SSIM of two image batches in ``[0, 1]`` (torchmetrics), with a 7x7 Gaussian window
    (sigma 1) that suits the small images the CRM regenerates. Differentiable in ``x``. Images with a
    side under 7 pixels are upsampled (bilinear) to 7 first: the window needs that much."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    x, y = x.float(), y.float()
    short = min(x.shape[-2:])
    if short < 7:
        x, y = (F.interpolate(t, scale_factor=7 / short, mode="bilinear", align_corners=False) for t in (x, y))
    return structural_similarity_index_measure(x, y, data_range=1.0, kernel_size=7, sigma=1.0)
