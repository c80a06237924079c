"""The package's architecture, checked: imports flow one way through the layers, with no cycle and
no private name used outside its module."""

import ast
from pathlib import Path

from helpers import ROOT

PACKAGE = ROOT / "src" / "dejavu"

# core <- tasks / data / models <- extensions <- training <- command line
LAYERS = {"dejavu": 0, "dejavu.dct": 0, "dejavu.redaction": 0, "dejavu.regeneration": 0, "dejavu.losses": 0,
          "dejavu.checks": 0,
          "dejavu.tasks": 1, "dejavu.data": 1, "dejavu.models": 1, "dejavu.extensions": 2, "dejavu.runs": 2,
          "dejavu.training": 3, "dejavu.cli": 4, "dejavu.__main__": 4}


def module_name(path: Path) -> str:
    parts = ["dejavu", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    prefix = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[prefix]


def is_module(name: str) -> bool:
    rel = PACKAGE.joinpath(*name.split(".")[1:])
    return rel.with_suffix(".py").is_file() or (rel / "__init__.py").is_file()


def imports(path: Path) -> list[tuple[str, list[str], ast.AST]]:
    """(module imported, names taken from it, node) for every import of a dejavu module, lazy ones included."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node) for a in node.names if a.name.split(".")[0] == "dejavu"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] != "dejavu":
                continue
            for a in node.names:  # `from . import losses` imports a module, `from .losses import X` a name
                sub = f"{base}.{a.name}"
                found.append((sub, [], node) if is_module(sub) else (base, [a.name], node))
    return found


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        edges.setdefault(module_name(path), set()).update(m for m, _, _ in imports(path))
    return edges


def test_imports_never_reach_a_higher_layer():
    wrong = [(a, b) for a, targets in graph().items() for b in targets if layer(b) > layer(a)]
    assert wrong == []


def test_no_import_cycle():
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if nxt == node or nxt not in edges:
                continue
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, node])):
                return cycle
        state[node] = 2
        return None

    cycles = [c for n in sorted(edges) if n not in state and (c := visit(n, []))]
    assert cycles == []


def test_no_private_name_crosses_a_module():
    crossing = []
    for path in PACKAGE.rglob("*.py"):
        aliases = {}
        for module, names, node in imports(path):
            crossing += [(module_name(path), module, n) for n in names if n.startswith("_") and not n.startswith("__")]
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = module
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                crossing.append((module_name(path), aliases[node.value.id], node.attr))
    assert crossing == []


def test_the_checks_see_real_imports():
    """Guard against a walker that finds nothing: known edges are present."""
    edges = graph()
    assert "dejavu.conditioning" in edges["dejavu.tasks.dense"]
    assert "dejavu.redaction" in edges["dejavu.losses"]
    assert "dejavu.training.lightning_cli" in edges["dejavu.cli.compare"]


def test_the_docs_examples_of_a_new_redaction_task_and_extension_work():
    import re

    import torch
    import torch.nn.functional as F
    from torchmetrics import MetricCollection
    from torchmetrics.regression import MeanSquaredError

    from dejavu import DejaVuLoss
    from dejavu import redaction as R
    from dejavu.extensions import AUXILIARIES, TrainingStep
    from dejavu.tasks import TASKS, create_task
    from dejavu.training import DejaVuModule

    section = (PACKAGE.parent.parent / "docs" / "contributing.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 3
    ns = {"torch": torch, "F": F, "MetricCollection": MetricCollection, "MeanSquaredError": MeanSquaredError}
    try:
        for block in blocks:
            exec(block, ns)
        loss_fn = DejaVuLoss(1, {"name": "stripes", "width": 4}, lpips_weight=0, scale=1.0)
        image = torch.rand(2, 3, 16, 16)
        out = loss_fn(image, torch.randn(2, 1, 16, 16))
        assert (out.redacted[:, :, 4:8] == 0).all() and (out.redacted[:, :, :4] > 0).any()
        task = create_task("edges")
        assert task.compute_metrics(torch.randn(2, 1, 8, 8), torch.rand(2, 1, 8, 8))["edge_mse"] > 0
        step = TrainingStep(lambda x: x, image, torch.randn(2, 1, 16, 16), task.condition, loss_fn, out)
        assert ns["RegeneratedEdges"]()(step)["edge_loss"] > 0
        # as a config names them: the redaction, the task and the extension, with no edit to the training module
        module = DejaVuModule({"name": "unet", "width": 4, "depth": 2}, {"name": "edges"},
                              dejavu={"redaction": {"name": "stripes", "width": 4}, "lpips_weight": 0},
                              auxiliaries=[{"name": "regenerated_edges", "weight": 0.1}], channels_last=False)
        logged = {}
        module.log_dict = lambda logs, **_: logged.update(logs)
        module.log = lambda *_, **__: None
        loss = module.training_step({"image": image, "edges": torch.rand(2, 1, 16, 16)}, 0)
        assert loss > 0 and logged["train/edge_loss"] > 0 and logged["train/dejavu_loss"] > 0
    finally:
        R.REGISTRY.pop("stripes", None)
        TASKS.pop("edges", None)
        AUXILIARIES.pop("regenerated_edges", None)


def test_the_readme_is_short_and_every_docs_link_resolves():
    """The README held 42 KB of reference; it keeps what a newcomer needs and docs/ the rest, with a table
    of contents. Every relative link points at a file that exists, every #anchor at a heading."""
    import re

    root = PACKAGE.parent.parent
    assert len((root / "README.md").read_text()) < 10_000
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    contents = (root / "docs" / "README.md").read_text()
    assert all(f"({p.name})" in contents for p in pages[1:] if p.name != "README.md")

    def anchors(path: Path) -> set[str]:
        headings = re.findall(r"^#+ (.*)$", path.read_text(), re.M)
        return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}

    for page in pages:
        for link in re.findall(r"\]\(([^)]+)\)", page.read_text()):
            target, _, anchor = link.partition("#")
            if link.startswith("http"):
                continue
            file = (page.parent / target).resolve() if target else page
            assert file.exists(), f"{page.name}: {link}"
            assert not anchor or file.suffix != ".md" or anchor in anchors(file), f"{page.name}: {link}"
