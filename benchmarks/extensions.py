"""One measured run of each extension on synthetic scenes (issue 5): command, metrics, wall time.

    python benchmarks/extensions.py [--out runs/extensions_bench] [--epochs N]

Runs, each as its own `dejavu fit` process, in this order (later runs use earlier runs' weights):
baseline and DejaVu segmentation, DejaVu-CL (+ its noise-robustness test at sigma 0, 0.1, 0.3 next to
the baseline's and DejaVu's), DejaVu-TS with the tiny random CLIP (plumbing only: no real CLIP weights
here), DejaVu-SA, redaction-as-augmentation, DDeP pretraining and fine-tuning on 10% of the labels
(with and without DejaVu), the same 10% from scratch, MAE pretraining and fine-tuning.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

# no ImageNet weights on an offline machine: DDeP's frozen encoder is then its random initialisation (the log
# says so), the same in every DDeP row; benchmarks/study/ddep.sh trains a supervised stand-in instead
OFFLINE_ENCODER = ["--model.network.encoder_weights", "null"]


def run(args: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dejavu.training", *args, "--trainer.enable_progress_bar", "false"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="runs/extensions_bench")
    a = p.parse_args()
    out = Path(a.out)
    results = {}
    jobs = [
        ("baseline", "configs/synthetic/segmentation_baseline.yaml", []),
        ("DejaVu", "configs/synthetic/segmentation_dejavu.yaml", []),
        ("DejaVu-CL", "configs/extensions/cl.yaml", []),
        ("DejaVu-TS (tiny random CLIP)", "configs/extensions/ts.yaml",
         ["--model.auxiliaries", "[{name: text, model: dejavu-tiny-clip, random_init: true}]"]),
        ("DejaVu-SA", "configs/extensions/sa.yaml", []),
        ("redaction as augmentation", "configs/extensions/augment.yaml", []),
        ("DDeP pretraining (decoder; encoder frozen)", "configs/extensions/ddep_pretrain.yaml", OFFLINE_ENCODER),
        ("10% labels, scratch", "configs/extensions/few_labels_scratch.yaml", []),
        ("10% labels, the encoder, a random decoder", "configs/extensions/few_labels_encoder.yaml", OFFLINE_ENCODER),
        ("10% labels, DDeP", "configs/extensions/ddep_finetune.yaml", OFFLINE_ENCODER),
        ("10% labels, DDeP + DejaVu", "configs/extensions/ddep_dejavu_finetune.yaml", OFFLINE_ENCODER),
        ("MAE pretraining", "configs/extensions/mae_pretrain.yaml", []),
        ("10% labels, MAE", "configs/extensions/mae_finetune.yaml", []),
    ]
    dirs = {}
    for name, config, extra in jobs:
        run_dir = out / Path(config).stem
        dirs[name] = run_dir
        pre = {"ddep_finetune": "ddep_pretrain", "ddep_dejavu_finetune": "ddep_pretrain",
               "mae_finetune": "mae_pretrain"}.get(Path(config).stem)
        if pre:
            extra = [*extra, "--model.pretrained", str(out / pre / "model.safetensors")]
        cmd = ["fit", "--config", config, "--run_dir", str(run_dir), "--overwrite", "true", *extra]
        seconds = run(cmd)
        metrics = {k: v for k, v in json.loads((run_dir / "metrics.json").read_text())["val"].items()
                   if "/IoU/" not in k}
        results[name] = {"command": "dejavu " + " ".join(cmd), "seconds": seconds, "val": metrics}
        print(f"{name:32s} {seconds:6.0f} s  " + "  ".join(f"{k}={v:.4f}" for k, v in metrics.items()), flush=True)
    for name in ("baseline", "DejaVu", "DejaVu-CL"):
        for sigma in ("0", "0.1", "0.3"):
            run_dir = dirs[name]
            cmd = ["test", "--config", str(run_dir / "config.yaml"), "--ckpt_path",
                   str(run_dir / "checkpoints/last.ckpt"), "--model.test_noise", sigma]
            run(cmd)
            suffix = "" if sigma == "0" else f"_noise{sigma}"
            test = json.loads((run_dir / f"test_metrics_val{suffix}.json").read_text())["metrics"]
            results[name][f"test_sigma_{sigma}"] = test
            print(f"{name:32s} sigma={sigma}: " + "  ".join(f"{k}={v:.4f}" for k, v in test.items()), flush=True)
    (out / "extensions.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
