"""How concentrated CAD's scores are, per weight, per attention head and per block, on the embedded U-Net and its
MMDiT sibling side by side: is concept knowledge as localised in a DiT as in a U-Net?

For each model and each of the 15 concepts, the plain erase attribution (`cadiff.attribute`, trajectory estimator,
every linear weight of the denoiser) and from its positive score mass:
- weights: the share held by the top 0.1 % and top 1 % of scored weights;
- heads: the share of the attention heads' mass held by the top head and by the top 10 % of heads, and the top
  head's share times the number of heads (1 = spread evenly, n_heads = all in one head);
- blocks: the share held by the top block (U-Net: `down_blocks.1`, `mid_block`, ...; MMDiT: `transformer_blocks.3`);
- density: the densest head's (block's) mass per weight over the mean mass per weight of all heads (blocks). The
  U-Net's heads and blocks differ in size (its blocks differ in width), the MMDiT's do not: the shares above
  favour the U-Net's big heads, the densities do not (1 = as dense as the average).

    flock /tmp/cadiff-heavy.lock .venv/bin/python bench/cad_concentration.py --models embedded:unet embedded:dit
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from cad_common import CadBenchmark, table
from common import RESULTS, hardware

BLOCK = re.compile(r"^(down_blocks\.\d+|up_blocks\.\d+|mid_block|transformer_blocks\.\d+|single_transformer_blocks\.\d+"
                   r"|[^.]+)")


def block_of(name: str) -> str:
    """The block a weight belongs to: its path up to the first block index (or its first part)."""
    return BLOCK.match(name).group(1)


def densest(mass: dict, size: dict) -> float:
    """The largest mass per weight among the parts, over the mean mass per weight of all of them."""
    mean = sum(mass.values()) / sum(size.values())
    return max(mass[k] / size[k] for k in mass) / mean if mean > 0 else 0.0


def head_sizes(result) -> dict[str, int]:
    """Scored weights per attention head, named as in `summary()["heads"]`."""
    from cadiff.attribution.selection import head_slices

    sizes: dict[str, int] = {}
    for name, (module, axis, n) in (result.metadata.get("heads") or {}).items():
        if name in result.scores:
            for h, idx in enumerate(head_slices(tuple(result.scores[name].shape), axis, n)):
                sizes[f"{module}/head{h}"] = sizes.get(f"{module}/head{h}", 0) + idx.numel()
    return sizes


def concentration(result) -> dict:
    """The shares above for one Attribution."""
    summary = result.summary()
    heads = sorted(summary["heads"].values(), reverse=True)
    head_total = sum(heads)
    blocks: dict[str, float] = {}
    block_sizes: dict[str, int] = {}
    for name, layer in summary["layers"].items():
        blocks[block_of(name)] = blocks.get(block_of(name), 0.0) + layer["mass_positive"]
        block_sizes[block_of(name)] = block_sizes.get(block_of(name), 0) + layer["n"]
    top_block = max(blocks, key=blocks.get)
    n_top = max(1, round(0.1 * len(heads)))
    return {
        "weights_top_0.1%": summary["concentration"]["top_0.1%"],
        "weights_top_1%": summary["concentration"]["top_1%"],
        "n_heads": len(heads),
        "head_top1": heads[0] / head_total if head_total > 0 else 0.0,
        "head_top10%": sum(heads[:n_top]) / head_total if head_total > 0 else 0.0,
        "head_top1_x_uniform": heads[0] / head_total * len(heads) if head_total > 0 else 0.0,
        "attention_share": head_total / summary["mass_positive"] if summary["mass_positive"] > 0 else 0.0,
        "top_block": top_block,
        "top_block_share": blocks[top_block] / summary["mass_positive"] if summary["mass_positive"] > 0 else 0.0,
        "n_blocks": len(blocks),
        "head_density": densest(summary["heads"], head_sizes(result)) if head_total > 0 else 0.0,
        "block_density": densest(blocks, block_sizes),
    }


class CadConcentration(CadBenchmark):
    name = "cad_concentration"
    summary = "how concentrated CAD's scores are per weight, head and block, on the U-Net and the MMDiT side by side"

    def options(self, p) -> None:
        super().options(p)
        p.add_argument("--models", nargs="+", default=["embedded:unet", "embedded:dit"],
                       help="pipeline folders or embedded:unet / embedded:dit, measured side by side")
        p.add_argument("--seeds", type=int, default=4)
        p.add_argument("--components", default="linear")
        p.add_argument("--concepts", nargs="*", default=None, help="default: all 15 of the shapes world")
        p.add_argument("--out", default=str(RESULTS / "cad_concentration.json"))

    def path(self, args) -> Path:
        return Path(args.out)

    def run(self, args) -> dict:
        import torch

        import cadiff
        from cadiff.worlds.shapes.world import CONCEPTS

        concepts = args.concepts or (list(CONCEPTS)[:2] if args.quick else list(CONCEPTS))
        seeds = 1 if args.quick else args.seeds
        torch.set_num_threads(args.threads)
        record = {"settings": {"seeds": seeds, "components": args.components, "concepts": concepts,
                               "hardware": hardware(args)}, "models": {}}
        for model in args.models:
            pipe = cadiff.load_pipeline(model, device=args.device)
            t0 = time.time()
            results = cadiff.attribute(pipe, concepts, seeds=seeds, components=args.components, progress=False)
            seconds = time.time() - t0
            per = {c: concentration(r) for c, r in zip(concepts, results)}
            record["models"][model] = {"pipeline": type(pipe).__name__, "seconds": round(seconds, 1), "concepts": per}
            print(model, f"{seconds:.0f} s", {k: v for k, v in per[concepts[0]].items()})
        return record

    def report(self, record: dict, args) -> str:
        import numpy as np

        s = record["settings"]
        keys = ["weights_top_0.1%", "weights_top_1%", "head_top1", "head_top10%", "head_top1_x_uniform",
                "head_density", "attention_share", "top_block_share", "block_density"]
        rows = []
        for model, m in record["models"].items():
            per = m["concepts"].values()
            rows.append([model, next(iter(per))["n_heads"]] + [float(np.mean([c[k] for c in per])) for k in keys])
        per_concept = []
        for c in s["concepts"]:
            per_concept.append([c] + [v for m in record["models"].values()
                                      for v in (m["concepts"][c]["head_density"], m["concepts"][c]["top_block"])])
        return (f"Plain erase attribution, {s['seeds']} seeds, components `{s['components']}`, {len(s['concepts'])} "
                f"concepts; mean over concepts of the positive score mass's shares ({s['hardware']}; `{args.json}`).\n\n"
                + table(["model", "heads", "top 0.1 % weights", "top 1 % weights", "top head", "top 10 % heads",
                         "top head x n_heads", "densest head", "attention share", "top block", "densest block"], rows)
                + "\n\nPer concept: the densest head (mass per weight over the heads' mean), and the top block.\n\n"
                + table(["concept"] + [f"{m} {k}" for m in record["models"] for k in ("densest head", "top block")],
                        per_concept))


if __name__ == "__main__":
    CadConcentration().main()
