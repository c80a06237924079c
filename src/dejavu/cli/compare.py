"""``dejavu compare``: two configs over N seeds, with the paired difference and its 95% confidence interval.

    dejavu compare --config A.yaml --config B.yaml --seeds 3 [--out DIR] [-- --trainer.max_epochs 5 ...]

For each seed ``s`` both configs train with ``--seed_everything s`` (same data, different initialisation
and batch order); the difference B - A is paired by seed. Per metric it reports each arm's mean and
standard deviation and the mean difference with a Student-t 95% interval. Writes ``compare.json``
and ``compare.md`` and prints the table.
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
from ..training.lightning_cli import fit_run


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
    p = argparse.ArgumentParser(prog="dejavu compare", description=__doc__.splitlines()[0])
    p.add_argument("--config", action="append", required=True, help="give exactly two: A then B")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1)")
    p.add_argument("--out", default="compare_out")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    a = p.parse_args(argv)
    if len(a.config) != 2:
        p.error(f"--config must be given exactly twice (A and B), got {len(a.config)}")
    if a.seeds < 1:
        p.error(f"--seeds must be >= 1, got {a.seeds}")
    for c in a.config:
        if not Path(c).is_file():
            p.error(f"--config {c}: no such file")
    out = Path(a.out)
    if out.exists() and any(out.iterdir()):
        if not a.overwrite:
            raise SystemExit(f"dejavu compare: {out} already exists; pass --overwrite or choose another --out")
        shutil.rmtree(out)

    names = [Path(c).stem for c in a.config]
    if names[0] == names[1]:
        names = ["A_" + names[0], "B_" + names[1]]
    runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    jobs = [(seed, name, cfg) for seed in range(a.seeds) for name, cfg in zip(names, a.config, strict=True)]
    for seed, name, cfg in tqdm(jobs, desc="dejavu compare", unit="run"):
        metrics = fit_run(cfg, out / name / f"seed{seed}", "--seed_everything", str(seed), *overrides)["val"]
        runs[name].append(metrics)

    keys = sorted(set(runs[names[0]][0]) & set(runs[names[1]][0]))
    summary = {k: paired_summary([r[k] for r in runs[names[0]]], [r[k] for r in runs[names[1]]]) for k in keys}
    write_json(out / "compare.json", {"A": {"name": names[0], "config": a.config[0]},
                                      "B": {"name": names[1], "config": a.config[1]},
                                      "seeds": a.seeds, "overrides": overrides, "runs": runs, "summary": summary})
    text = render(names[0], names[1], summary)
    (out / "compare.md").write_text(
        f"# dejavu compare\n\nA = `{a.config[0]}`, B = `{a.config[1]}`, seeds 0..{a.seeds - 1}, overrides: "
        f"`{' '.join(overrides) or 'none'}`. Validation metrics; B − A paired by seed, Student-t 95% interval.\n\n"
        f"{text}\n")
    print("\n" + text + f"\n\nwrote {out}/compare.md and {out}/compare.json")
