"""Capture overhead: wall time of `collect_activations` (hooks + copies + shard writing) against plain
`cadiff.generate` for the same prompts and seeds, alternating, several repeats.

Writes the section `capture` of docs/sae.md.
Run: flock /tmp/cadiff-heavy.lock .venv/bin/python bench/sae_capture.py [--quick]
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from sae_common import SaeBenchmark, load, random_prompts, table


class SaeCapture(SaeBenchmark):
    name = "sae_capture"
    summary = "capture overhead: collect_activations (hooks, copies, shards) against plain generation"

    def options(self, p) -> None:
        super().options(p)
        p.add_argument("--repeats", type=int, default=2)
        p.add_argument("--n", type=int, default=16, help="images per timed run")

    def run(self, args) -> dict:
        import cadiff
        from cadiff.sae import ActivationCapture, collect_activations, resolve_steps

        pipe = load(args)
        n = 16 if args.quick else args.n
        prompts, seeds = random_prompts(n, seed=1), list(range(n))
        cases = {"all 7 hookpoints, all 25 steps, both branches": (cadiff.sae.hookpoints(pipe), "all")}
        cadiff.generate(pipe, prompts[:4], seeds[:4])  # warm-up
        rows, repeats = [], 1 if args.quick else args.repeats
        for label, (hooks, steps) in cases.items():
            plain, hooked, captured = [], [], []
            for _ in range(repeats):
                t0 = time.perf_counter()
                cadiff.generate(pipe, prompts, seeds, batch_size=64)
                plain.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                with ActivationCapture(pipe, hooks, resolve_steps(steps, 25)) as cap:
                    cadiff.generate(pipe, prompts, seeds, batch_size=64)
                    cap.take()
                hooked.append(time.perf_counter() - t0)
                tmp = Path(tempfile.mkdtemp(prefix="sae-capture-"))
                t0 = time.perf_counter()
                store = collect_activations(pipe, prompts, seeds, tmp / "acts", hookpoints=hooks, at_steps=steps,
                                            shard_size=64)
                captured.append(time.perf_counter() - t0)
                size = sum(p.stat().st_size for p in store.shards)
                shutil.rmtree(tmp)
            hook_over = np.array(hooked) / np.array(plain) - 1
            overhead = np.array(captured) / np.array(plain) - 1
            rows.append([label, len(resolve_steps(steps, 25)), f"{np.median(plain):.2f}",
                         f"{np.median(hook_over):+.1%} ({hook_over.min():+.1%} .. {hook_over.max():+.1%})",
                         f"{np.median(overhead):+.1%} ({overhead.min():+.1%} .. {overhead.max():+.1%})",
                         f"{size / n / 1e3:.0f} kB"])
            print(rows[-1], flush=True)
        return {"rows": rows, "images": n, "repeats": repeats, "settings": vars(args)}

    def report(self, results: dict, args) -> str:
        return f"""### Capture overhead

`bench/sae_capture.py`: {results["images"]} images (25 DDIM steps, guidance 4, batch 64) generated plainly and through
with an `ActivationCapture` attached (hooks and copies to memory), and through `collect_activations` (also writing
float32 shards to local disk, computing masks and the evaluator's labels of the final images), alternating,
{results["repeats"]} repeats, 2 CPU threads on a shared 2-core machine. Overhead = time / plain time - 1 per repeat; median
(range) over repeats.

{table(["what is captured", "steps", "plain s", "hooks only", "collect (hooks + shards)", "disk / image"],
       results["rows"])}
"""


if __name__ == "__main__":
    SaeCapture().main()
