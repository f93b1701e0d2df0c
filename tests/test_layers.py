"""No package imports one above it: errors, the config and registry bases, the I/O layer and the process group at
the bottom, then the report's pictures, the denoiser adapters and models, exports, worlds, attribution, editing, evaluation,
calibration, attacks / sae, cli."""

import ast
from pathlib import Path

import cadiff

ROOT = Path(cadiff.__file__).parent
BELOW = {"_version": set(), "errors": set(), "config": {"errors"}, "registry": {"errors"}, "io": {"_version", "errors", "distributed"},
         "distributed": {"errors"}}
BASE = {"_version", "errors", "config", "registry", "io", "distributed"}
BELOW["report"] = BASE
BELOW["adapters"] = BASE | {"adapters"}
BELOW["models"] = BELOW["adapters"] | {"models"}
BELOW["exports"] = BELOW["models"] | {"exports"}
BELOW["worlds"] = BELOW["models"] | {"worlds", "report"}
BELOW["attribution"] = BELOW["worlds"] | {"attribution"}
BELOW["editing"] = BELOW["attribution"] | {"editing", "report", "exports"}
BELOW["evaluation"] = BELOW["editing"] | {"evaluation"}
BELOW["calibration"] = BELOW["evaluation"] | {"calibration"}
BELOW["attacks"] = BELOW["calibration"] | {"attacks"}
BELOW["sae"] = BELOW["worlds"] | {"sae"}
BELOW["cli"] = BELOW["attacks"] | BELOW["sae"] | {"cli"}


def _imports(path: Path) -> set[str]:
    """The cadiff packages a module imports (at the top or inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
        out |= {n.split(".")[1] for n in names if n.startswith("cadiff.")}
    return out


def test_no_package_imports_one_above_it():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        package = parts[0].removesuffix(".py")
        if package in ("__init__", "__main__"):
            continue
        for target in sorted(_imports(path) - BELOW.get(package, set()) - {package}):  # moved-module notices: none
            wrong.append(f"{path.relative_to(ROOT)} imports cadiff.{target}")
    assert wrong == []


GUIDANCE_KEYWORDS = {"guidance_scale", "true_cfg_scale", "negative_prompt"}


def test_only_the_adapters_say_how_a_pipeline_is_guided_and_name_a_family():
    """How a pipeline is guided (its guidance keywords) and which classes make a family are the adapters'
    knowledge: no other module passes the guidance keywords or names a family's pipeline or denoiser class. (Exports'
    original layouts are keyed by the adapter's name, not by a class.)"""
    from cadiff.adapters import ADAPTERS

    classes = {c for a in ADAPTERS.values() for c in getattr(a, "denoisers", ())}
    classes |= {c.replace("Transformer2DModel", "Pipeline") for c in classes}
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        if path.relative_to(ROOT).parts[0] == "adapters":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg in GUIDANCE_KEYWORDS:
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} passes {node.arg}=")
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in classes:
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} names {node.value}")
    assert classes and wrong == []
