"""Dependencies point inward (issue 30): every import inside onepane goes from a package (or a
top-level module) to one in a lower layer of LAYERS, so no import cycle between packages can
come back unnoticed, and a new package must be given its place here."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "onepane"

# Lowest first. A unit (a subpackage of onepane, or a top-level module) may import units of
# lower layers only. docs/architecture.md draws the same table.
LAYERS: list[set[str]] = [
    {"errors", "apps", "web"},                     # leaves: errors; app images and console files
    {"model", "secrets", "retry", "ports", "atomic", "periodic", "listeners", "memory",
     "client"},                                    # small helpers over errors
    {"spec", "store"},                             # what a deployment asks for; the database
    {"events"},                                    # the event log (over the store)
    {"gslb", "providers", "traffic"},              # drivers: DNS servers, compute, data planes
    {"config"},                                    # settings (names DNS accounts' types)
    {"auth", "inventory", "policy", "shutdown"},   # services over the drivers
    {"images", "cluster"},                         # the catalog; several nodes, one leader
    {"deploy"},                                    # deployments: reconciler, mobility, DNS
    {"core"},                                      # wires everything for one process
    {"api", "lab", "dnslab"},                      # HTTP front ends; test and bench labs
    {"server"},                                    # `onepane up`'s process
    {"cli"},                                       # the command line
]
LAYER_OF = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def unit_of(module: str) -> str:
    """onepane.deploy.service -> deploy; onepane.config -> config."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports(path: Path) -> list[tuple[str, int]]:
    """Every onepane module this file imports, with its line (relative imports resolved;
    `from .. import x` counts as importing onepane.x)."""
    module = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    if path.name == "__init__.py":
        package = package[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            if node.module is None or target == "onepane":
                out += [(f"{target}.{a.name}", node.lineno) for a in node.names]
            else:
                out.append((target, node.lineno))
    return [(m, line) for m, line in out if m.startswith("onepane.")]


def test_every_unit_has_a_layer() -> None:
    units = {p.stem if p.is_file() else p.name for p in ROOT.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    units |= {p.name for p in ROOT.iterdir() if p.is_dir() and p.name in LAYER_OF}
    assert units - set(LAYER_OF) == set(), "give each new package or module its layer"


def test_imports_point_inward() -> None:
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        src = unit_of(".".join(path.relative_to(ROOT.parent).with_suffix("").parts))
        if src in ("", "__init__"):
            continue
        for module, line in imports(path):
            dst = unit_of(module)
            if dst == src or dst not in LAYER_OF:
                continue
            if LAYER_OF[dst] >= LAYER_OF[src]:
                wrong.append(f"{path.relative_to(ROOT.parent)}:{line}: {src} -> {dst}")
    assert wrong == [], "imports that point outward (or sideways):\n" + "\n".join(wrong)
