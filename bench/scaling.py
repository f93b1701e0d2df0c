"""One process against two, side by side in one run, on the embedded model: `attribute` (16 trajectories of circle,
the `linear` weights) and the calibrated erase of circle (its defaults), timed inside the processes (model loaded,
the clock started at a barrier) as

- one process of 1 thread, one process of 2 threads, and two processes of 1 thread each (`torchrun
  --nproc-per-node 2`, gloo): on a 2-core machine the last uses both cores as the second does;
- and whether the two-process results equal the one-process ones (the attribution's scores to fp32 rounding, the
  erase's chosen setting and zeroed count).

Writes bench/results/scaling.json and the section `scaling` of docs/guide.md.

    flock /tmp/cadiff-heavy.lock .venv/bin/python bench/scaling.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, Benchmark, table

JOBS = ("attribute", "calibrated erase")


def worker(job: str, threads: int, out: str) -> None:
    """Run one timed job in this process (one rank of it under torchrun) and, on rank 0, write its result."""
    import torch

    import cadiff
    from cadiff.distributed import is_main, process_group, rank_and_world

    torch.set_num_threads(threads)
    with process_group():
        pipe = cadiff.load_pipeline()
        world = rank_and_world()[1]
        if world > 1:
            import torch.distributed as dist

            dist.barrier()
        start = time.perf_counter()
        if job == "attribute":
            attr = cadiff.attribute(pipe, "circle", seeds=16, components="linear", progress=False)
            result = {"J": attr.metadata["J"]}
            scores = attr.scores
        else:
            edit = cadiff.erase(pipe, "circle", progress=False)
            result = {"setting": edit.certificate.point.setting, "zeroed": len(edit.mask),
                      "outcome": edit.certificate.outcome}
            scores = {}
        seconds = time.perf_counter() - start
        if is_main():
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in scores.items()} or {"none": torch.zeros(1)}, f"{out}.safetensors")
            Path(f"{out}.json").write_text(json.dumps({**result, "seconds": seconds, "processes": world,
                                                       "threads": threads}))


class Scaling(Benchmark):
    name = "scaling"
    summary = "one process against two (torchrun, gloo) on the embedded model: attribute and the calibrated erase"
    doc, title = ROOT / "docs" / "guide.md", "## Run on several processes or GPUs"

    def options(self, p) -> None:
        super().options(p)
        p.add_argument("--jobs", nargs="*", default=list(JOBS), choices=JOBS)

    def report(self, results: dict, args) -> str:
        return report(results)

    def run(self, args) -> dict:
        from safetensors.torch import load_file

        saved = self.path(args)  # jobs not run now keep their last measurement
        results = json.loads(saved.read_text()) if saved.exists() else {"jobs": {}}
        torchrun = str(Path(sys.executable).with_name("torchrun"))
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with tempfile.TemporaryDirectory() as tmp:
            for job in args.jobs:
                runs = {}
                for label, launch, threads in (("1 process, 1 thread", [sys.executable], 1),
                                               ("1 process, 2 threads", [sys.executable], 2),
                                               ("2 processes, 1 thread each",
                                                [torchrun, "--nproc-per-node", "2"], 1)):
                    out = f"{tmp}/{job.replace(' ', '-')}-{len(runs)}"
                    subprocess.run([*launch, __file__, "--worker", job, str(threads), out], check=True,
                                   env={**env, "OMP_NUM_THREADS": str(threads)}, cwd=ROOT / "bench")
                    runs[label] = {**json.loads(Path(f"{out}.json").read_text()),
                                   "scores": load_file(f"{out}.safetensors")}
                    print(job, label, {k: v for k, v in runs[label].items() if k != "scores"}, flush=True)
                one, two = runs["1 process, 1 thread"], runs["2 processes, 1 thread each"]
                if job == "attribute":  # the largest difference of a score, in shares of the largest score
                    top = max(float(v.abs().max()) for v in one["scores"].values())
                    gap = max(float((two["scores"][k] - v).abs().max()) for k, v in one["scores"].items()) / top
                    same = {"max_difference_of_largest_score": gap, "same": gap <= 1e-5}
                else:
                    same = {"same": one["setting"] == two["setting"] and one["zeroed"] == two["zeroed"]}
                results["jobs"][job] = {"runs": {k: {x: y for x, y in v.items() if x != "scores"}
                                                 for k, v in runs.items()}, "same_result": same}
        return results


def report(results: dict) -> str:
    rows = []
    for job, r in results["jobs"].items():
        runs = r["runs"]
        one = runs["1 process, 1 thread"]["seconds"]
        for label, run in runs.items():
            same = r["same_result"]
            shown = ("yes" if same["same"] else "NO") + (
                f" (largest difference {same['max_difference_of_largest_score']:.0e} of the largest score)"
                if "max_difference_of_largest_score" in same else "")
            rows.append([job, label, f"{run['seconds']:.1f}", f"{one / run['seconds']:.2f}x",
                         shown if run["processes"] > 1 else ""])
    head = ("Measured by `bench/scaling.py` on the embedded model (2 CPU cores): `attribute` of circle over 16 "
            "trajectories (`linear` weights) and the calibrated erase of circle (its defaults), timed inside the "
            "processes from a barrier after the model is loaded. *speed-up*: against one process of one thread; "
            "*same result*: the two processes' scores equal the one's to fp32 rounding, within 1e-5 of the largest "
            "score (attribute: the trajectories are summed in another order), the same setting chosen and weights "
            "zeroed (erase). JSON: `bench/results/scaling.json`.")
    return head + "\n\n" + table(["job", "run", "seconds", "speed-up", "same result"], rows)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        Scaling().main()
