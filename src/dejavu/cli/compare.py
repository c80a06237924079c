"""``dejavu compare``: configs over N seeds, each against the first, with paired differences and 95% intervals.

    dejavu compare --config A.yaml --config B.yaml [--config C.yaml ...] --seeds 3 [--out DIR] \\
                   [-- --trainer.max_epochs 5 ...]

For each seed ``s`` every config trains with ``--seed_everything s`` (same data, different initialisation
and batch order); each difference B - A is paired by seed. A study of several levers names the
reference once and each lever after it, so the reference trains once per seed rather than once per
lever. Per metric it reports each arm's mean and standard deviation and the mean difference with a
Student-t 95% interval. Writes ``compare.json`` and ``compare.md`` and prints the tables.
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
from pathlib import Path

from scipy import stats
from tqdm import tqdm

from ..training.callbacks import write_json
from ..training.lightning_cli import compose_config, fit_run, resolve_config, test_run


def paired_summary(a: list[float], b: list[float]) -> dict[str, float | None]:
    """Means, standard deviations and the paired difference ``b - a`` with a 95% t interval."""
    n = len(a)
    diffs = [y - x for x, y in zip(a, b, strict=True)]
    mean_d = statistics.fmean(diffs)
    sd = lambda xs: statistics.stdev(xs) if len(xs) > 1 else None  # noqa: E731
    half = (stats.t.ppf(0.975, n - 1) * sd(diffs) / math.sqrt(n)) if n > 1 else None
    return {"a_mean": statistics.fmean(a), "a_std": sd(a), "b_mean": statistics.fmean(b), "b_std": sd(b),
            "diff_mean": mean_d, "ci95_low": None if half is None else mean_d - half,
            "ci95_high": None if half is None else mean_d + half, "n": n}


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def render(name_a: str, name_b: str, summary: dict[str, dict]) -> str:
    lines = [f"| metric | A: {name_a} (mean ± sd) | B: {name_b} (mean ± sd) | B − A | 95% CI |",
             "|---|---|---|---|---|"]
    for metric, s in summary.items():
        lines.append(f"| {metric} | {_fmt(s['a_mean'])} ± {_fmt(s['a_std'])} | {_fmt(s['b_mean'])} ± "
                     f"{_fmt(s['b_std'])} | {s['diff_mean']:+.4f} | [{_fmt(s['ci95_low'])}, {_fmt(s['ci95_high'])}] |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = list(argv or [])
    overrides = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(
        prog="dejavu compare", usage="dejavu compare --config A.yaml --config B.yaml [...] [options] [-- OVERRIDES]",
        description=__doc__.splitlines()[0], epilog="Everything after a lone -- is passed to every run's dejavu fit, "
        "e.g. `-- --trainer.max_epochs 4 --data.num_workers 2`: the same overrides for every arm and seed. An "
        "override that would change an arm's kind (model.dejavu while an arm is a baseline) is refused: put DejaVu "
        "settings in the DejaVu arm's config.")
    p.add_argument("--config", action="append", required=True,
                   help="the reference A, then one or more configs B to compare with it")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1)")
    p.add_argument("--out", default="compare_out", help="folder for the runs (OUT/ARM/seedN) and the report "
                   "(default: compare_out)")
    p.add_argument("--test-noise", type=float, nargs="+", default=[], metavar="SIGMA",
                   help="also test each run's exported weights on the test split with Gaussian noise of these standard "
                        "deviations (supp. B.1; 0 = clean), reported as test_noise<SIGMA>/<metric>")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    a = p.parse_args(argv)
    if len(a.config) < 2:
        p.error(f"--config must be given at least twice (A, then each B), got {len(a.config)}")
    if a.seeds < 1:
        p.error(f"--seeds must be >= 1, got {a.seeds}")
    a.config = [resolve_config(c) for c in a.config]  # a packaged config by its name, from any folder
    for c in a.config:
        if not Path(c).is_file():
            p.error(f"--config {c}: no such file, nor a packaged config (dejavu configs lists them)")
    check_arms(a.config, overrides)
    out = Path(a.out)
    if out.exists() and any(out.iterdir()):
        if not a.overwrite:
            raise SystemExit(f"dejavu compare: {out} already exists; pass --overwrite or choose another --out")
        shutil.rmtree(out)

    names = arm_names(a.config)
    runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    jobs = [(seed, name, cfg) for seed in range(a.seeds) for name, cfg in zip(names, a.config, strict=True)]
    for seed, name, cfg in tqdm(jobs, desc="dejavu compare", unit="run"):
        run = out / name / f"seed{seed}"
        metrics = {k: v for k, v in fit_run(cfg, run, "--seed_everything", str(seed), *overrides)["val"].items()
                   if "/IoU/" not in k}  # the summary metrics; each run's metrics.json has every class's IoU
        for sigma in a.test_noise:
            tested = test_run(run, "test", sigma)["metrics"]
            metrics |= {f"test_noise{sigma:g}/{k.removeprefix('test/')}": v for k, v in tested.items()}
        runs[name].append(metrics)

    ref = runs[names[0]]
    arms = []
    for name, cfg in zip(names[1:], a.config[1:], strict=True):
        keys = sorted(set(ref[0]) & set(runs[name][0]))
        arms.append({"name": name, "config": cfg,
                     "summary": {k: paired_summary([r[k] for r in ref], [r[k] for r in runs[name]]) for k in keys}})
    write_json(out / "compare.json", {"A": {"name": names[0], "config": a.config[0]}, "B": arms,
                                      "seeds": a.seeds, "overrides": overrides, "runs": runs})
    tables = "\n\n".join(render(names[0], arm["name"], arm["summary"]) for arm in arms)
    configs = ", ".join(f"`{c}`" for c in a.config[1:])
    (out / "compare.md").write_text(
        f"# dejavu compare\n\nA = `{a.config[0]}`, B = {configs}, seeds 0..{a.seeds - 1}, overrides: "
        f"`{' '.join(overrides) or 'none'}`. Validation metrics (and test metrics under noise where asked); "
        f"B − A paired by seed, Student-t 95% interval.\n\n"
        f"{tables}\n")
    print("\n" + tables + f"\n\nwrote {out}/compare.md and {out}/compare.json")


def check_arms(configs: list[str], overrides: list[str]) -> None:
    """Refuse arms whose numbers could not be compared: configs of different tasks, or pass-through
    overrides of ``model.dejavu`` with an arm that is a baseline (or that set it to null), which would
    change what an arm is while it kept its name.

    Raises:
        SystemExit: naming the configs or the override, and what to do instead.
    """
    composed = {c: compose_config(c).get("model", {}) for c in configs}
    tasks = {c: _task_kind(m.get("task") or {}) for c, m in composed.items()}
    if len(set(tasks.values())) > 1:
        listed = "; ".join(f"{c}: {t}" for c, t in tasks.items())
        raise SystemExit(f"dejavu compare: the configs train different tasks ({listed}); their metrics and losses "
                         "cannot be compared. Compare configs of one task")
    touching = [o for o in overrides if o.partition("=")[0].startswith("--model.dejavu")]
    baselines = [c for c, m in composed.items() if not m.get("dejavu")]
    if touching and baselines:
        raise SystemExit(f"dejavu compare: the override {touching[0]} applies to every arm, and would make the "
                         f"baseline {baselines[0]} a DejaVu run still reported as the baseline; put DejaVu settings "
                         "in the DejaVu arm's config (a config that names the other as its base:)")
    for i, o in enumerate(overrides):
        name, eq, value = o.partition("=")
        value = value if eq else (overrides[i + 1] if i + 1 < len(overrides) else "")
        if name == "--model.dejavu" and value.strip().lower() in ("null", "none", "~"):
            raise SystemExit("dejavu compare: the override --model.dejavu null switches DejaVu off in every arm, "
                             "which would leave DejaVu arms reported by their configs' names; compare a baseline "
                             "config instead")


def _task_kind(task: dict) -> str:
    """What a task predicts, by name (a multitask's tasks in order); settings such as class counts aside,
    since a config may leave them to the dataset."""
    if task.get("name") == "multitask":
        return "multitask[" + ", ".join(str(t.get("name")) for t in task.get("tasks", [])) + "]"
    if task.get("name") == "query_panoptic":  # a query-based network's panoptic maps: the same PQ, SQ, RQ, mIoU
        return "panoptic"
    return str(task.get("name"))


def arm_names(configs: list[str]) -> list[str]:
    """Run-folder names: each config's file stem, prefixed by its position where stems repeat."""
    stems = [Path(c).stem for c in configs]
    if len(set(stems)) == len(stems):
        return stems
    return [f"{i}_{s}" for i, s in enumerate(stems)]
