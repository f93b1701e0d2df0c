"""Evaluation throughput (images/s) on the embedded model, and what resuming an interrupted run costs.

Three runs of the same evaluation (the balanced shapes design, shapes metric): uninterrupted; interrupted after
the first batch and resumed; and a re-run on the finished folder (nothing left to generate).

    flock /tmp/cadiff-heavy.lock .venv/bin/python bench/eval_throughput.py
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from common import Timer
from eval_common import EvalBenchmark, load, table


class Stop(Exception):
    pass


class EvalThroughput(EvalBenchmark):
    name = "eval_throughput"
    summary = "evaluation throughput (images/s) on the embedded model, and what resuming an interrupted run costs"

    def options(self, p) -> None:
        super().options(p)
        p.add_argument("--repeats", type=int, default=2, help="repeats of the 36-prompt balanced design")
        p.add_argument("--batch-size", type=int, default=24)

    def run(self, args) -> dict:
        if args.quick:
            args.repeats, args.batch_size = 1, 12
        from cadiff.evaluation import evaluate, load_prompts
        from cadiff.models.loading import sampling_defaults

        pipe = load(args)
        prompts = load_prompts("shapes-balanced", per_prompt=args.repeats)
        work = Path(args.work) / "throughput"
        shutil.rmtree(work, ignore_errors=True)
        common = dict(metrics=["shapes"], metric_options={"judge_weights": args.evaluator}, batch_size=args.batch_size)

        with Timer() as full:
            summary = evaluate(pipe, prompts, work / "full", **common)
        batches = {"n": 0}

        def interrupt(n):
            batches["n"] += 1
            if batches["n"] == 1:
                raise Stop

        with Timer() as first:
            try:
                evaluate(pipe, prompts, work / "resumed", progress=interrupt, **common)
            except Stop:
                pass
        with Timer() as resumed:
            evaluate(pipe, prompts, work / "resumed", **common)
        with Timer() as again:
            evaluate(pipe, prompts, work / "resumed", **common)

        sessions = json.loads((work / "resumed" / "run.json").read_text())["sessions"]
        full_session = json.loads((work / "full" / "run.json").read_text())["sessions"][0]
        n = len(prompts)
        return {
            "images": n, "batch_size": args.batch_size, "threads": args.threads, **sampling_defaults(pipe),
            "full_seconds": full.seconds, "images_per_second": n / full.seconds,
            "generate_images_per_second": n / full_session["generate_seconds"],
            "metric_seconds": full_session["metric_seconds"], "interrupted_seconds": first.seconds,
            "resumed_seconds": resumed.seconds, "rows_reused": sessions[1]["rows_reused"],
            "rows_regenerated_on_resume": sessions[1]["rows_generated"], "rerun_complete_seconds": again.seconds,
            "resume_overhead_seconds": first.seconds + resumed.seconds - full.seconds,
            "shape_accuracy": summary["metrics"]["shapes"]["accuracy"],
        }

    def report(self, result: dict, args) -> str:
        n, batch_size = result["images"], result["batch_size"]
        repeats = n // 36  # the balanced shapes design: 36 prompts a repeat
        rows = [
            ["uninterrupted", n, round(result["full_seconds"], 1), round(n / result["full_seconds"], 2)],
            ["interrupted after batch 1", batch_size, round(result["interrupted_seconds"], 1), "–"],
            ["resumed (rows reused: %d)" % result["rows_reused"], result["rows_regenerated_on_resume"],
             round(result["resumed_seconds"], 1), "–"],
            ["re-run of the finished folder", 0, round(result["rerun_complete_seconds"], 1), "–"],
        ]
        return (f"{n} images of the balanced shapes design ({repeats} repeats), "
                f"{result['num_inference_steps']} DDIM steps, guidance {result['guidance_scale']}, batch {batch_size}, "
                f"{result['threads']} CPU threads; shapes evaluator metric.\n\n"
                + table(["run", "images generated", "wall s", "images/s"], rows)
                + f"\n\nGeneration alone: {result['generate_images_per_second']:.2f} images/s; scoring: "
                f"{result['metric_seconds']:.2f} s for all "
                f"{n} images. Interrupting and resuming cost {result['resume_overhead_seconds']:+.1f} s in total against "
                f"the uninterrupted run (model fingerprint, reading rows.csv, and a smaller last batch); finished rows "
                f"were never regenerated ({result['rows_regenerated_on_resume']} of {n} generated on resume).")


if __name__ == "__main__":
    EvalThroughput().main()
