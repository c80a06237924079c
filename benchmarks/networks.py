"""Parameters and training-step time of the shipped configs' networks, without and with DejaVu.

One step is ``DejaVuModule.training_step`` (the task loss with any deep supervision, the DejaVu loss
in the config's setting with LPIPS on random weights, backward) and the optimiser steps, as
``dejavu fit`` runs it; median of the timed steps after one warm-up, on procedural scenes.

    python benchmarks/networks.py                      # every network, 256x256, batch 2
    python benchmarks/networks.py --only ocr --size 128 128
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dejavu.data import SyntheticVideo
from dejavu.training.module import DejaVuModule

CITYSCAPES = {"redaction": {"name": "random_blocks", "block_size": 32, "threshold": 0.4}, "regenerator": "recursive",
              "regenerator_kwargs": {"steps": 20}, "lpips_weight": 0.3, "lpips_weights": "random"}
COCO = {"redaction": {"name": "checkerboard", "block_size": 8}, "regenerator": "forward",
        "regenerator_kwargs": {"stages": 2}, "lpips_weight": 0.1, "lpips_weights": "random"}
SYNTHETIC = {**COCO, "lpips_weight": 0.0}
NYUD = {"redaction": {"name": "bandstop", "block_size": 32}, "regenerator": "recursive",
        "regenerator_kwargs": {"steps": 20}, "lpips_weight": 0.3, "lpips_weights": "random", "scale": 0.5}
KITTI = {"redaction": {"name": "bandstop", "block_size": 32}, "regenerator": "forward",
         "regenerator_kwargs": {"stages": 2}, "mse_weight": 0.3, "lpips_weight": 0.03, "lpips_weights": "random",
         "scale": 0.5}
MTPSL = {"name": "segnet_mtl", "widths": [64, 128, 256, 512, 512], "convs": [2, 2, 3, 3, 3]}
NYUD_TASKS = {"name": "multitask", "tasks": [{"name": "segmentation", "num_classes": 13}, {"name": "depth"},
                                             {"name": "normals"}]}
XTC = [{"name": "xtc", "weight": 2.0, "reg_weight": 0.5}]
THINGS = list(range(3, 83))  # COCO's 80 things, the scenes' 3 among them

NETWORKS = {  # name: (network, task, DejaVu setting of its config[, auxiliary objectives])
    "unet (synthetic)": ({"name": "unet", "width": 16, "depth": 3}, {"name": "segmentation", "num_classes": 6},
                         SYNTHETIC),
    "hrnetv2 hrnet_w18 (cityscapes)": ({"name": "hrnetv2", "encoder": "tu-hrnet_w18"},
                                       {"name": "segmentation", "num_classes": 19}, CITYSCAPES),
    "hrnetv2 hrnet_w48 (cityscapes, W48)": ({"name": "hrnetv2", "encoder": "tu-hrnet_w48"},
                                            {"name": "segmentation", "num_classes": 19}, CITYSCAPES),
    "ocr hrnet_w18 (cityscapes, OCR)": ({"name": "ocr", "encoder": "tu-hrnet_w18"},
                                        {"name": "segmentation", "num_classes": 19}, CITYSCAPES),
    "ocr hrnet_w48 (cityscapes, OCR W48)": ({"name": "ocr", "encoder": "tu-hrnet_w48"},
                                            {"name": "segmentation", "num_classes": 19}, CITYSCAPES),
    "ocr_hms hrnet_w48 (cityscapes, HMS)": ({"name": "ocr_hms", "encoder": "tu-hrnet_w48"},
                                            {"name": "segmentation", "num_classes": 19}, CITYSCAPES),
    "upernet_vit vit_base_patch16 (ade20k, UperNet ViT-B)": ({"name": "upernet_vit"},
                                                            {"name": "segmentation", "num_classes": 150}, CITYSCAPES),
    "denseclip ViT-B-16 (ade20k, DenseCLIP)": ({"name": "denseclip", "normalize": "clip"},
                                               {"name": "segmentation", "num_classes": 150}, CITYSCAPES),
    "smp:UPerNet convnext_tiny (ade20k)": ({"name": "smp:UPerNet", "encoder": "tu-convnext_tiny"},
                                           {"name": "segmentation", "num_classes": 150}, CITYSCAPES),
    "smp:FPN poolformer_m48 (ade20k, PoolFormer)": ({"name": "smp:FPN", "encoder": "tu-poolformer_m48"},
                                                    {"name": "segmentation", "num_classes": 150}, CITYSCAPES),
    "smp:FPN resnet50 bottom-up panoptic (coco)": ({"name": "smp:FPN", "encoder": "resnet50"},
                                                   {"name": "panoptic", "num_classes": 133, "things": THINGS}, COCO),
    "mask2former swin_tiny (coco, Mask2Former)": ({"name": "mask2former", "backbone": "swin_tiny"},
                                                  {"name": "query_panoptic", "num_classes": 133, "things": THINGS},
                                                  COCO),
    "mask2former swin_large (ade20k semantic, Mask2Former)": ({"name": "mask2former", "backbone": "swin_large"},
                                                              {"name": "query_semantic", "num_classes": 150},
                                                              CITYSCAPES),
    "mask2former swin_large (coco, Swin-L)": ({"name": "mask2former", "backbone": "swin_large", "num_queries": 200},
                                              {"name": "query_panoptic", "num_classes": 133, "things": THINGS},
                                              COCO),
    "smp:Unet resnet18 selfsup depth (kitti, monodepth2)": ({"name": "smp:Unet", "encoder": "resnet18"},
                                                           {"name": "selfsup_depth", "pose": "network"}, KITTI),
    "smp:Unet resnet50 selfsup depth (kitti, monodepth2 R50)": ({"name": "smp:Unet", "encoder": "resnet50"},
                                                               {"name": "selfsup_depth", "pose": "network"}, KITTI),
    "segnet_mtl MTPSL (nyud, SegNet-MTL)": (MTPSL, NYUD_TASKS, NYUD),
    "segnet_mtl MTPSL + xtc (nyud, SegNet-XTC)": (MTPSL, NYUD_TASKS, NYUD, XTC),
}


def step_seconds(module: DejaVuModule, batch: dict[str, torch.Tensor], rounds: int) -> float:
    optimizers = module.configure_optimizers()["optimizer"]
    module.log = module.log_dict = lambda *a, **k: None  # no trainer to log to
    times = []
    for r in range(rounds + 1):  # one warm-up
        t = time.perf_counter()
        loss = module.training_step(batch, 0)
        optimizers.zero_grad(set_to_none=True)
        loss.backward()
        optimizers.step()
        if r:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, nargs=2, default=(256, 256))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--only", default=None, help="run the networks whose name contains this")
    a = p.parse_args()
    clips = SyntheticVideo(a.batch, size=tuple(a.size))  # every target: labels, depth, normals, neighbouring frames
    batch = {k: torch.stack([clips[i][k] for i in range(a.batch)]) for k in clips[0]}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {a.batch} x 3 x {a.size[0]} x {a.size[1]}, "
          f"median of {a.rounds} steps\n")
    print("| network | parameters | s / step | with DejaVu | ratio |\n|---|---|---|---|---|")
    for name, (network, task, dejavu, *auxiliaries) in NETWORKS.items():
        if a.only and a.only not in name:
            continue
        torch.manual_seed(0)
        auxiliaries = auxiliaries[0] if auxiliaries else None
        # a zero learning rate: the same work, finite numbers
        base = DejaVuModule(network, task, auxiliaries=auxiliaries, optim={"lr": 0.0})
        params = sum(q.numel() for q in base.net.parameters())
        t0 = step_seconds(base, batch, a.rounds)
        still = {"lr": 0.0, "crm_lr": 1e-12}
        t1 = step_seconds(DejaVuModule(network, task, dejavu=dejavu, auxiliaries=auxiliaries, optim=still), batch,
                          a.rounds)
        print(f"| {name} | {params / 1e6:.1f} M | {t0:.2f} | {t1:.2f} | {t1 / t0:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
