"""DejaVu-SA: regeneration folded into the network through shared attention (the DejaVu paper, section 3.4).

The input is band-stop redacted; patch embeddings of the base network's prediction attend to patch
embeddings of the redacted image (multi-head attention); the attended tokens feed two decoders: the
reconstruction decoder ``D_r`` regenerates the image (trained with the regeneration loss) and the
enhancement decoder ``D_e`` refines the prediction, which is the final output. Unlike plain DejaVu
this adds inference cost; :func:`dejavu.models.model_cost` measures it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..redaction import BandStop

__all__ = ["SharedAttention"]


class SharedAttention(nn.Module):
    """Wraps ``base`` (images to ``(B, N, H, W)`` predictions) with DejaVu-SA.

    Args:
        base: the dense prediction network.
        pred_channels: ``N``, the channels of ``base``'s output.
        embed_dim: attention width (paper: 32, 64, 128 for its three sizes).
        heads: attention heads; must divide ``embed_dim``.
        patch: side of the square patches that become tokens.
        block_size, band: the band-stop redaction of the input (paper: ``b = 32``).

    ``forward(image)`` returns the enhanced prediction and runs only what it needs (not ``D_r``), so
    :func:`dejavu.models.model_cost` measures the true inference cost; ``forward_train(image)``
    returns ``(enhanced, regenerated, redacted)``, images in the input's own units, and
    ``training_outputs(image)`` what training takes of them.

    Example:
        >>> sa = SharedAttention(nn.Conv2d(3, 5, 1), pred_channels=5, embed_dim=16, heads=2)
        >>> sa(torch.rand(2, 3, 30, 40)).shape
        torch.Size([2, 5, 30, 40])
    """

    auxiliary = "sa"  # the objective a run of it needs, its regeneration loss (dejavu.extensions)

    def __init__(self, base: nn.Module, pred_channels: int, embed_dim: int = 32, heads: int = 4, patch: int = 8,
                 block_size: int = 32, band: tuple[float, float] = (0.25, 0.5)) -> None:
        super().__init__()
        if embed_dim % heads:
            raise ValueError(f"SharedAttention: heads={heads} must divide embed_dim={embed_dim}")
        self.base, self.patch = base, patch
        self.redact = BandStop(block_size, band)
        self.embed_pred = nn.Conv2d(pred_channels, embed_dim, patch, stride=patch)
        self.embed_image = nn.Conv2d(3, embed_dim, patch, stride=patch)
        self.attention = nn.MultiheadAttention(embed_dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(embed_dim)
        self.unpatch = nn.ConvTranspose2d(embed_dim, embed_dim, patch, stride=patch)
        self.decode_image = nn.Sequential(nn.Conv2d(embed_dim + 3, embed_dim, 3, padding=1), nn.ReLU(inplace=True),
                                          nn.Conv2d(embed_dim, 3, 3, padding=1))
        self.decode_pred = nn.Sequential(nn.Conv2d(embed_dim + pred_channels, embed_dim, 3, padding=1),
                                         nn.ReLU(inplace=True), nn.Conv2d(embed_dim, pred_channels, 3, padding=1))

    def _shared(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The base prediction, the redacted image and the attended features at image resolution."""
        prediction = self.base(image)
        with torch.no_grad():
            redacted = self.redact(image)
        h, w = image.shape[-2:]
        ph, pw = -h % self.patch, -w % self.patch
        pred_p = F.pad(prediction, (0, pw, 0, ph), mode="replicate")
        red_p = F.pad(redacted, (0, pw, 0, ph), mode="replicate")
        q = self.embed_pred(pred_p)
        grid = q.shape[-2:]
        q = q.flatten(2).transpose(1, 2)
        kv = self.embed_image(red_p).flatten(2).transpose(1, 2)
        shared = self.norm(q + self.attention(q, kv, kv, need_weights=False)[0])
        up = self.unpatch(shared.transpose(1, 2).reshape(q.shape[0], -1, *grid))[..., :h, :w]
        return prediction, redacted, up

    def forward_train(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        prediction, redacted, up = self._shared(image)
        regenerated = redacted + self.decode_image(torch.cat([up, redacted], dim=1))
        enhanced = prediction + self.decode_pred(torch.cat([up, prediction], dim=1))
        return enhanced, regenerated, redacted

    def training_outputs(self, image: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """What training asks of a network: its prediction (here the enhanced one), and what else it makes
        for the objectives (here the regenerated image, for DejaVu-SA's loss, as ``"sa_regenerated"``)."""
        enhanced, regenerated, _ = self.forward_train(image)
        return enhanced, {"sa_regenerated": regenerated}

    def forward(self, image: Tensor) -> Tensor:
        # inference runs only what makes the prediction: the reconstruction decoder D_r is for training
        prediction, _, up = self._shared(image)
        return prediction + self.decode_pred(torch.cat([up, prediction], dim=1))
