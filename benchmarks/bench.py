"""``dejavu bench`` (``python benchmarks/bench.py`` in a checkout): what DejaVu costs, measured side by
side (the DejaVu supplementary, section B.5). The harness lives beside the benchmarks, not in the package.

Sections (``--only`` picks some):

- ``overhead``: seconds per training step and memory of a step with DejaVu against the same step
  without, on the UNets of the shipped configs, HRNet-W18 (256x512, batch 2) and a ResNet-50 UNet
  (512x512, batch 8; the GPU case, minutes a step on a CPU: pick it with ``--models``). Steps of all
  variants alternate, after warm-up; medians and ratios are reported. Memory is the peak allocated
  on CUDA, and on a CPU the activations saved for backward (the part of a step's memory DejaVu adds).
- ``loss``: the DejaVu loss alone, forward and backward, per call: the operators that launch kernels
  and the host syncs (counted with :class:`OpCounter` on any device), and on CUDA the wall time, the
  GPU's own busy time and kernel count (torch.profiler) and the syncs ``torch.cuda.set_sync_debug_mode``
  reports; plus the host syncs of a whole default training step.
- ``redaction``: redaction throughput on 8x3x512x1024 float32 against scipy's DCT over the same
  blocks, the ``torch-dct`` package and ``tensor.clone()`` (the memory-bandwidth floor).
- ``data``: synthetic scene generation rate.
- ``inference``: zero inference cost: a DejaVu run's exported model against the baseline
  architecture (parameters, FLOPs, outputs). The command fails if they differ.

Prints a table and writes ``bench.json`` (and ``bench.md``) to ``--out``. ``--quick`` is the small
version CI runs (under 2 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from dejavu.losses import DejaVuLoss
from dejavu.models import create_model, model_cost
from dejavu.redaction import BandStop, Checkerboard, LowPass, RandomBlocks

try:
    from .opcount import OpCounter
except ImportError:  # run as a script: python benchmarks/bench.py
    from opcount import OpCounter


def machine() -> dict[str, Any]:
    info = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------ overhead
RANDOM_BLOCKS = {"name": "random_blocks", "block_size": 32, "threshold": 0.4}
BANDSTOP = {"name": "bandstop", "block_size": 32}
VARIANTS: dict[str, dict[str, Any] | None] = {
    "baseline": None,
    # DejaVuLoss's defaults (CRM width tied to the classes, regeneration at a quarter of the side,
    # CRM-R's norm-free steps fused, LPIPS at CRM-R's last step, checks without a sync) with the paper's CRMs
    "CRM-F 2 stages, random blocks": dict(redaction=RANDOM_BLOCKS, regenerator="forward"),
    "CRM-R 20 steps, random blocks": dict(redaction=RANDOM_BLOCKS, regenerator="recursive"),
    # band-stop at half resolution, where its band survives (the kitti_depth and nyud presets)
    "CRM-F 2 stages, band-stop, scale 0.5": dict(redaction=BANDSTOP, regenerator="forward", scale=0.5),
    "CRM-R 20 steps, band-stop, scale 0.5": dict(redaction=BANDSTOP, regenerator="recursive", scale=0.5),
    # the paper's sizes, for reference: width 64, full resolution, every activation kept, LPIPS at every step
    "CRM-F 2 stages, width 64, full resolution": dict(
        redaction=RANDOM_BLOCKS, regenerator="forward", regenerator_kwargs={"width": 64}, scale=1.0),
    "CRM-R 20 steps, width 64, full resolution": dict(
        redaction=RANDOM_BLOCKS, regenerator="recursive", regenerator_kwargs={"width": 64}, scale=1.0,
        lpips_steps="all"),
}
# the options of the defaults' past, for `--variants`
EXTRA_VARIANTS: dict[str, dict[str, Any]] = {
    # the paper's Conv-BN-ReLU block, checkpointed per step: CRM-R's default before the fused norm-free steps
    "CRM-R 20 steps batch norm, random blocks": dict(redaction=RANDOM_BLOCKS, regenerator="recursive",
                                                     regenerator_kwargs={"norm": True}),
    # the input checks with a device sync at each call (two): the default before they ran asynchronously
    "CRM-F 2 stages, random blocks, synced checks": dict(redaction=RANDOM_BLOCKS, regenerator="forward",
                                                         check_finite="sync"),
}

# the networks of the shipped configs at their resolution and batch, and the paper's Cityscapes backbone
MODELS: dict[str, dict[str, Any]] = {
    "unet, synthetic config": dict(model="unet", size=(64, 64), batch=8, classes=6, width=16, depth=3),
    "unet, CamVid config": dict(model="unet", size=(180, 240), batch=8, classes=11, width=16, depth=4),
    "smp:FPN tu-hrnet_w18": dict(model="smp:FPN", size=(256, 512), batch=2, classes=19, encoder="tu-hrnet_w18"),
    "smp:Unet resnet50, 512x512": dict(model="smp:Unet", size=(512, 512), batch=8, classes=19, encoder="resnet50"),
}
CPU_MODELS = [m for m in MODELS if m != "smp:Unet resnet50, 512x512"]  # the default on a CPU


class TrainStep:
    """One training step (forward, loss, backward, update) of a network with or without DejaVu: the
    network in SGD, the CRM in its own Adam (``DejaVuLoss.regenerator_optimizer``), as ``dejavu fit`` trains."""

    def __init__(self, net: torch.nn.Module, classes: int, spec: dict[str, Any] | None, device: torch.device,
                 amp: bool, lpips: bool, channels_last: bool = True) -> None:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net.to(memory_format=fmt)
        # lr 0 below: repeated steps on one random batch may diverge; a zero learning rate does the same
        # work and keeps the numbers finite
        self.loss = None if spec is None else DejaVuLoss(
            classes, **{"lpips_weight": 0.3 if lpips else 0.0, "lpips_weights": "random", **spec}).to(device)
        self.format = fmt
        self.opts = [torch.optim.SGD(net.parameters(), lr=0.0, momentum=0.9)]
        if self.loss is not None:
            self.opts.append(self.loss.regenerator_optimizer(lr=0.0))
        self.device, self.amp = device, amp

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x = x.contiguous(memory_format=self.format)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            raw = self.net(x)
            loss = F.cross_entropy(raw.float(), y)
            if self.loss is not None:
                loss = loss + self.loss(x, raw).loss
        for opt in self.opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in self.opts:
            opt.step()


def saved_activation_bytes(step: TrainStep, x: torch.Tensor, y: torch.Tensor) -> int:
    """Bytes of the activations autograd saves for backward during one step. Parameters and buffers
    that autograd also saves (convolution weights, LPIPS's backbone) are not counted: they are in
    memory whether or not a step runs."""
    modules = [step.net, *([step.loss] if step.loss is not None else [])]
    resident = {t.data_ptr() for m in modules for t in [*m.parameters(), *m.buffers()]}
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        if t.data_ptr() not in resident:
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step(x, y)
    return total


def overhead(model: str, size: tuple[int, int], batch: int, device: torch.device, rounds: int, amp: bool,
             lpips: bool, variants: dict[str, dict | None] = VARIANTS, classes: int = 19,
             **model_kwargs: Any) -> list[dict]:
    torch.manual_seed(0)
    x = torch.rand(batch, 3, *size, device=device)
    y = torch.randint(0, classes, (batch, *size), device=device)
    steps = {}
    for name, spec in variants.items():
        torch.manual_seed(0)
        net = create_model(model, classes, **model_kwargs).to(device)
        steps[name] = TrainStep(net, classes, spec, device, amp, lpips)
    times: dict[str, list[float]] = {n: [] for n in steps}
    for r in range(rounds + 2):  # two warm-up rounds
        for name, step in steps.items():
            _sync(device)
            t = time.perf_counter()
            step(x, y)
            _sync(device)
            if r >= 2:
                times[name].append(time.perf_counter() - t)
    rows = []
    for name, step in steps.items():
        counter = FlopCounterMode(display=False)
        with counter:
            step(x, y)
        flops = counter.get_total_flops()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            step(x, y)
            torch.cuda.synchronize()
            memory, kind = torch.cuda.max_memory_allocated(), "peak allocated"
        else:
            memory, kind = saved_activation_bytes(step, x, y), "saved activations"
        rows.append({"model": model_kwargs.get("encoder", model), "size": list(size), "batch": batch, "variant": name,
                     "amp": amp, "lpips": lpips, "s_per_step": statistics.median(times[name]),
                     "memory_mb": memory / 2**20, "memory_kind": kind, "train_gflop": flops / 1e9})
    base = rows[0]
    for row in rows:
        row["time_ratio"] = row["s_per_step"] / base["s_per_step"]
        row["memory_ratio"] = row["memory_mb"] / base["memory_mb"]
        row["flop_ratio"] = row["train_gflop"] / base["train_gflop"]
    return rows


# ------------------------------------------------------------------------------------ loss alone
# "bare": no LPIPS and no input checks; the others are DejaVuLoss's defaults (checks on)
LOSS_VARIANTS: dict[str, dict[str, Any]] = {
    "CRM-F, bare": dict(regenerator="forward", lpips_weight=0.0, check_finite=False),
    "CRM-F, no LPIPS": dict(regenerator="forward", lpips_weight=0.0),
    "CRM-F, LPIPS": dict(regenerator="forward"),
    "CRM-R 20, bare": dict(regenerator="recursive", lpips_weight=0.0, check_finite=False),
    "CRM-R 20, no LPIPS": dict(regenerator="recursive", lpips_weight=0.0),
    "CRM-R 20, LPIPS": dict(regenerator="recursive"),
    # the paper's Conv-BN-ReLU block, checkpointed per step: CRM-R's default before the fused steps
    "CRM-R 20 batch norm, bare": dict(regenerator="recursive", regenerator_kwargs={"norm": True}, lpips_weight=0.0,
                                      check_finite=False),
    "CRM-R 20 batch norm, LPIPS": dict(regenerator="recursive", regenerator_kwargs={"norm": True}),
}


def _cuda_profile(fn: Callable[[], Any]) -> dict[str, Any]:
    """The GPU's busy time and kernel count of one call (torch.profiler), and the host syncs
    ``torch.cuda.set_sync_debug_mode`` reports during another."""
    import warnings

    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    gpu = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return {"gpu_ms": sum(e.device_time_total for e in gpu) / 1e3, "gpu_kernels": len(gpu),
            "cuda_syncs": sum("synchroniz" in str(w.message) for w in caught)}


def _measure(fn: Callable[[], Any], device: torch.device, repeats: int) -> dict[str, Any]:
    fn()
    fn()  # warm-up: caches, allocator, lazy initialisation
    with OpCounter() as ops:
        fn()
    row = {"operators": ops.kernels, "host_syncs": ops.syncs, "ms": _time(fn, device, repeats) * 1e3}
    return {**row, **(_cuda_profile(fn) if device.type == "cuda" else {})}


def loss_alone(shape: tuple[int, int, int, int], device: torch.device, repeats: int, compile_mode: str | None = None,
               variants: dict[str, dict[str, Any]] = LOSS_VARIANTS) -> list[dict]:
    """The DejaVu loss alone on a batch ``(B, N, H, W)`` (image and prediction at ``H x W``), forward and
    backward per call, with the gradients cleared as a training step clears them."""
    b, n, h, w = shape
    torch.manual_seed(0)
    x = torch.rand(b, 3, h, w, device=device)
    p = torch.randn(b, n, h, w, device=device, requires_grad=True)
    rows = []
    for name, spec in variants.items():
        torch.manual_seed(0)
        fn = DejaVuLoss(n, **{"redaction": RANDOM_BLOCKS, "lpips_weights": "random", **spec}).to(device)
        if compile_mode:
            fn.regenerator = torch.compile(fn.regenerator, mode=compile_mode)

        def call(fn: DejaVuLoss = fn) -> None:
            for t in (p, *fn.parameters()):
                t.grad = None
            fn(x, p).loss.backward()

        row = {"variant": name, "shape": list(shape), "compile": compile_mode or ""}
        try:
            row.update(_measure(call, device, repeats))
        except Exception as e:  # a compiler that fails is a finding, not the end of the benchmark
            if not compile_mode:
                raise
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        rows.append(row)
    return rows


def step_syncs(device: torch.device) -> list[dict]:
    """Host syncs and operators of whole default training steps (synthetic UNet, 4x3x128x128, 19 classes)."""
    x = torch.rand(4, 3, 128, 128, device=device)
    y = torch.randint(0, 19, (4, 128, 128), device=device)
    rows = []
    for name in ("baseline", "CRM-F 2 stages, random blocks", "CRM-R 20 steps, random blocks"):
        torch.manual_seed(0)
        step = TrainStep(create_model("unet", 19, width=16, depth=3).to(device), 19, VARIANTS[name], device,
                         amp=False, lpips=True)
        rows.append({"variant": f"training step, {name}", "shape": [4, 19, 128, 128],
                     **_measure(lambda step=step: step(x, y), device, 3)})
    return rows


# ----------------------------------------------------------------------------------- redaction
def _time(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def _scipy_bandstop(x, b: int, keep):
    import scipy.fft

    n, c, h, w = x.shape
    blocks = x.reshape(n, c, h // b, b, w // b, b)
    coef = scipy.fft.dctn(blocks, axes=(3, 5), norm="ortho", workers=-1)
    coef *= keep[:, None, :]
    return scipy.fft.idctn(coef, axes=(3, 5), norm="ortho", workers=-1).reshape(n, c, h, w)


def _torch_dct_bandstop(x: torch.Tensor, b: int, keep: torch.Tensor) -> torch.Tensor:
    import torch_dct

    n, c, h, w = x.shape
    blocks = x.reshape(n, c, h // b, b, w // b, b).permute(0, 1, 2, 4, 3, 5)
    coef = torch_dct.dct_2d(blocks, norm="ortho") * keep
    return torch_dct.idct_2d(coef, norm="ortho").permute(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)


def redaction(shape: tuple[int, ...], device: torch.device, repeats: int) -> list[dict]:
    from dejavu.dct import block_frequency

    x = torch.rand(*shape, device=device)
    b = 32
    f = block_frequency(b, b, device)
    keep = ((f < 0.25) | (f >= 0.5)).float()
    gen = torch.Generator(device).manual_seed(0)
    cases: dict[str, Callable[[], Any]] = {
        "clone (bandwidth floor)": x.clone,
        "BandStop b=32": lambda: BandStop(b)(x),
        "LowPass b=32": lambda: LowPass(b, 0.25)(x),
        "RandomBlocks b=32 t=0.4": lambda: RandomBlocks(b, 0.4)(x, generator=gen),
        "Checkerboard b=32": lambda: Checkerboard(b)(x),
    }
    if device.type == "cpu":
        xn, kn = x.numpy(), keep.numpy()
        cases["scipy.fft.dctn band-stop b=32"] = lambda: _scipy_bandstop(xn, b, kn)
    try:
        import torch_dct  # noqa: F401

        cases["torch-dct band-stop b=32"] = lambda: _torch_dct_bandstop(x, b, keep)
    except ImportError:
        pass
    rows = [{"case": name, "s": _time(fn, device, repeats)} for name, fn in cases.items()]
    floor = rows[0]["s"]
    for row in rows:
        row["x_clone"] = row["s"] / floor
        row["GB_per_s"] = x.numel() * 4 / row["s"] / 1e9
    return rows


# ----------------------------------------------------------------------------- inference cost
def inference_cost(size: tuple[int, int] = (64, 64)) -> dict[str, Any]:
    """Train a tiny DejaVu run, export it, and compare the export with the baseline architecture."""
    from dejavu.training.lightning_cli import DejaVuCLI, fit_run, packaged_config

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        fit_run(packaged_config("synthetic/segmentation_dejavu.yaml"), run, "--trainer.max_epochs", "1",
                "--data.train_length", "16", "--data.val_length", "8", "--trainer.enable_progress_bar", "false",
                "--figure_images", "0")
        spec = json.loads((run / "model.json").read_text())
        exported = torch.load(run / "model.pt", weights_only=True)
        # the baseline config's network, built as `dejavu fit` builds it
        baseline = DejaVuCLI(args=["--config", str(packaged_config("synthetic/segmentation_baseline.yaml")),
                                   "--run_dir", str(Path(tmp) / "baseline")], run=False).model.net
    # the training module keeps its network channels-last; the export is compared in the default layout
    baseline = baseline.to(memory_format=torch.contiguous_format).eval()
    same_keys = list(exported) == list(baseline.state_dict())
    if not same_keys:
        extra = sorted(set(exported) - set(baseline.state_dict()))[:3]
        exported_params = {"parameters": sum(v.numel() for v in exported.values())}
        return {"ok": False, "same_parameter_names": False, "same_outputs": False, "extra_parameters": extra,
                "baseline": model_cost(baseline, size), "exported": exported_params}
    baseline.load_state_dict(exported)
    net = dict(spec["network"])
    rebuilt = create_model(net.pop("name"), spec["task"]["num_classes"], **net).eval()
    rebuilt.load_state_dict(exported)
    probe = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        same_out = torch.equal(baseline(probe), rebuilt(probe))
    a, b = model_cost(baseline, size), model_cost(rebuilt, size)
    ok = same_keys and same_out and a == b
    return {"ok": ok, "same_parameter_names": same_keys, "same_outputs": same_out, "baseline": a, "exported": b}


# ----------------------------------------------------------------------------------------- cli
def _table(rows: list[dict], cols: list[str]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="dejavu bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, for CI (under 2 minutes on 2 cores)")
    p.add_argument("--only", default="overhead,loss,redaction,data,inference", help="comma-separated sections")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="where to measure (default: cuda when there is one)")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast in the overhead section")
    p.add_argument("--no-lpips", dest="lpips", action="store_false", help="LPIPS off in the overhead section")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds per variant")
    p.add_argument("--loss-shape", type=int, nargs=4, default=None, metavar=("B", "N", "H", "W"),
                   help="batch, classes and size of the loss section (default 8 19 512 512 on CUDA, 2 19 128 128 "
                        "on a CPU)")
    p.add_argument("--compile", default=None, metavar="MODE",
                   help="loss section: also run each variant with its regenerator under torch.compile(mode=MODE), "
                        "e.g. reduce-overhead (CUDA graphs)")
    p.add_argument("--variants", default=None,
                   help=f"overhead section: ';'-separated, from {sorted({**VARIANTS, **EXTRA_VARIANTS})} (default: "
                        "the first seven; the baseline always runs first)")
    p.add_argument("--models", default=None, help=f"';'-separated (the names hold commas), from {sorted(MODELS)} "
                                                  "(default: all)")
    p.add_argument("--out", default="bench_out", help="folder for the results (default: bench_out)")
    a = p.parse_args(argv)
    device = torch.device(a.device)
    models = a.models.split(";") if a.models else list(MODELS) if device.type == "cuda" else CPU_MODELS
    if unknown := [m for m in models if m not in MODELS]:
        p.error(f"--models: unknown {unknown}; choose from {sorted(MODELS)}, separated by ';'")
    known = {**VARIANTS, **EXTRA_VARIANTS}
    if a.variants and (unknown := [v for v in a.variants.split(";") if v not in known]):
        p.error(f"--variants: unknown {unknown}; choose from {sorted(known)}, separated by ';'")
    only = set(a.only.split(","))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"machine": machine(), "device": str(device), "quick": a.quick}
    md = [f"# dejavu bench\n\n`dejavu bench {' '.join(argv or [])}` on {json.dumps(result['machine'])}\n"]

    if "overhead" in only:
        rounds = a.rounds or (3 if a.quick else 10)
        if a.quick:
            quick = {k: VARIANTS[k] for k in ("baseline", "CRM-F 2 stages, random blocks",
                                              "CRM-R 20 steps, band-stop, scale 0.5")}
            rows = overhead(**{**MODELS["unet, synthetic config"], "batch": 4}, device=device, rounds=rounds,
                            amp=a.amp, lpips=a.lpips, variants=quick)
        else:
            rows = []
            chosen = {"baseline": None, **{k: {**VARIANTS, **EXTRA_VARIANTS}[k] for k in a.variants.split(";")}} \
                if a.variants else None
            for name in models:
                spec = MODELS[name]
                slow = spec["model"] != "unet" or spec["size"][0] > 64
                # the paper-sized CRM-R takes minutes a step on HRNet-W18 on a CPU: left out there
                variants = chosen or {k: v for k, v in VARIANTS.items()
                                      if spec["model"] == "unet" or "CRM-R 20 steps, width" not in k}
                rows += overhead(**spec, device=device, rounds=max(3, rounds // 2) if slow else rounds, amp=a.amp,
                                 lpips=a.lpips, variants=variants)
        result["overhead"] = rows
        md.append("## Training overhead\n\n" + _table(rows, [
            "model", "size", "batch", "variant", "s_per_step", "time_ratio", "train_gflop", "flop_ratio", "memory_mb",
            "memory_ratio", "memory_kind"]))
    if "loss" in only:
        shape = tuple(a.loss_shape or ((8, 19, 512, 512) if device.type == "cuda" else (2, 19, 128, 128)))
        repeats = 3 if a.quick else 10
        rows = loss_alone(shape, device, repeats)
        if a.compile:
            defaults = {k: LOSS_VARIANTS[k] for k in ("CRM-F, LPIPS", "CRM-R 20, LPIPS")}
            rows += loss_alone(shape, device, repeats, a.compile, defaults)
        rows += step_syncs(device)
        result["loss"] = rows
        md.append(f"## The DejaVu loss alone, forward and backward, {shape} (B, N, H, W)\n\n" + _table(rows, [
            "variant", "compile", "operators", "host_syncs", "ms", "gpu_ms", "gpu_kernels", "cuda_syncs", "error"]))
    if "redaction" in only:
        shape = (2, 3, 128, 256) if a.quick else (8, 3, 512, 1024)
        rows = redaction(shape, device, 3 if a.quick else 10)
        result["redaction"] = {"shape": list(shape), "rows": rows}
        md.append(f"## Redaction throughput, {shape}\n\n" + _table(rows, ["case", "s", "x_clone", "GB_per_s"]))
    if "data" in only:
        from dejavu.data import SyntheticScenes

        n = 100 if a.quick else 500
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        ds = SyntheticScenes(n, size=(64, 64))
        t = time.perf_counter()
        for i in range(n):
            ds[i]
        rate = n / (time.perf_counter() - t)
        torch.set_num_threads(threads)
        result["data"] = {"scenes_per_s_64x64_one_core": rate}
        md.append(f"## Data\n\nSynthetic scenes at 64x64 on one core: {rate:.0f} images/s")
    if "inference" in only:
        result["inference"] = inference_cost()
        inf = result["inference"]
        md.append("## Zero inference cost\n\n" + _table(
            [{"model": k, **inf[k]} for k in ("baseline", "exported")], ["model", "parameters", "flops"])
            + f"\n\nsame parameter names: {inf['same_parameter_names']}, same outputs: {inf['same_outputs']}")

    (out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "bench.md").write_text("\n\n".join(md) + "\n")
    print("\n\n".join(md))
    if "inference" in only and not result["inference"]["ok"]:
        raise SystemExit("dejavu bench: zero inference cost is BROKEN: the exported model differs from the baseline")


if __name__ == "__main__":
    main()
