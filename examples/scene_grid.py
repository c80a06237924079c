"""Write a grid of synthetic scenes and their ground truth: ``python examples/scene_grid.py [OUT.png]``.

Rows are scenes; columns are image, semantic classes, depth and normals.
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dejavu.data import CLASSES, SyntheticScenes

out = sys.argv[1] if len(sys.argv) > 1 else "scenes.png"
ds = SyntheticScenes(6, size=(128, 160), seed=0)
fig, axes = plt.subplots(len(ds), 4, figsize=(10, 2.1 * len(ds)))
for row, item in zip(axes, ds, strict=True):
    row[0].imshow(item["image"].permute(1, 2, 0))
    row[1].imshow(item["semantic"], cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
    row[2].imshow(item["depth"][0], cmap="magma_r")
    row[3].imshow((item["normals"].permute(1, 2, 0) + 1) / 2)
for ax, title in zip(axes[0], ["image", "semantic (" + ", ".join(CLASSES) + ")", "depth", "normals"], strict=True):
    ax.set_title(title, fontsize=7)
for ax in axes.flat:
    ax.axis("off")
fig.tight_layout()
fig.savefig(out, dpi=90)
print(f"wrote {out}")
