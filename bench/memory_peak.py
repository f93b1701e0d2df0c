"""Peak memory of `attribute` at Stable Diffusion 1.5 size on the CPU (random weights, 64 x 64 latents, 2 steps, one
trajectory, the `ff` weights), each measurement in a fresh process (peak resident memory), side by side:

- the floor: the pipeline, one fp32 copy of the selected weights (the accumulators), the stock call sampling the
  trajectory and per step one forward + backward of the conditional branch, bare (as bench/family_speed.py's);
- `attribute`, and `attribute` with `checkpointing` (the blocks' activations recomputed in the backward pass).

Writes bench/results/memory_peak.json and the section `memory_peak` of docs/cad.md. SDXL size (128 x 128 latents)
is left to a machine with more memory and time than this one's 2 cores.

    flock /tmp/cadiff-heavy.lock .venv/bin/python bench/memory_peak.py
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, Benchmark, table

RUNS = ("floor", "attribute", "attribute with checkpointing")
STEPS, GUIDANCE, COMPONENTS = 2, 7.5, "ff"


def worker(run: str, quick: bool, out: str) -> None:
    """One measurement in this (fresh) process: its seconds and the growth of its peak resident memory."""
    import torch

    import cadiff
    from family_speed import floor
    from gpu_check import sd15

    torch.set_num_threads(2)
    pipe = sd15(quick)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if run == "floor":
        from cadiff.attribution import select_parameters

        accumulators = {n: torch.zeros(p.shape) for n, p in select_parameters(pipe.unet, COMPONENTS).items()}
        floor(pipe, "a red circle", 1, STEPS, GUIDANCE, COMPONENTS)
        del accumulators
    else:
        cadiff.attribute(pipe, "a red circle", seeds=1, steps=STEPS, guidance=GUIDANCE, components=COMPONENTS,
                         checkpointing=run.endswith("checkpointing"), progress=False)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    weights = sum(p.numel() * p.element_size() for p in pipe.components["unet"].parameters())
    Path(out).write_text(json.dumps({"seconds": round(seconds, 2), "peak_gb": round(peak * 1024 / 1e9, 3),
                                     "growth_gb": round((peak - before) * 1024 / 1e9, 3),
                                     "unet_weights_gb": round(weights / 1e9, 3)}))


class MemoryPeak(Benchmark):
    name = "memory_peak"
    summary = "peak memory of attribute at SD 1.5 size on the CPU against its floor, with and without checkpointing"
    doc, title = ROOT / "docs" / "cad.md", "# CAD"

    def report(self, results: dict, args) -> str:
        return report(results)

    def run(self, args) -> dict:
        runs = {}
        with tempfile.TemporaryDirectory() as tmp:
            for run in RUNS:
                out = f"{tmp}/{len(runs)}.json"
                subprocess.run([sys.executable, __file__, "--worker", run, "1" if args.quick else "0", out],
                               check=True, cwd=ROOT / "bench")
                runs[run] = json.loads(Path(out).read_text())
                print(run, runs[run], flush=True)
        return {"quick": args.quick, "steps": STEPS, "components": COMPONENTS, "runs": runs}


def report(results: dict) -> str:
    floor = results["runs"]["floor"]["peak_gb"]
    rows = [[run, f"{r['seconds']:.1f}", f"{r['peak_gb']:.2f}", f"{r['peak_gb'] / floor:.2f}x"]
            for run, r in results["runs"].items()]
    head = ("Stable Diffusion 1.5's architecture with random weights on the CPU (`bench/memory_peak.py`"
            f"{', --quick: test sizes' if results['quick'] else ''}), 64 x 64 latents, {results['steps']} steps, one "
            f"trajectory, the `{results['components']}` weights, each run in a fresh process: its peak resident "
            "memory (GB) against the floor's (the pipeline, one fp32 copy of the selected weights, the stock call "
            "and per step one forward + backward of the conditional branch). JSON: `bench/results/memory_peak.json`.")
    return head + "\n\n" + table(["run", "seconds", "peak GB", "x floor"], rows)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3] == "1", sys.argv[4])
    else:
        MemoryPeak().main()
