"""Write docs/shapes-training.md from a training run's train_log.json (times, losses, held-out accuracies).

Run: .venv/bin/python bench/shapes_training_report.py build/shapes-v2/train_log.json [--note "text"]
(its results, the log and the note: bench/results/shapes_training.json)
"""

import json
from pathlib import Path

from common import ROOT, Benchmark, Skip

DOCS = ROOT / "docs"


class ShapesTraining(Benchmark):
    name = "shapes_training"
    summary = "the page on how the shipped model was trained, from a training run's train_log.json (measures nothing)"

    def options(self, p) -> None:
        p.add_argument("log", nargs="?", help="the training run's train_log.json (required to run)")
        p.add_argument("--note", default="", help="a paragraph put under the command line")

    def run(self, args) -> dict:
        if not args.log:
            raise SystemExit("give the training run's train_log.json")
        return {"log": json.loads(Path(args.log).read_text()), "log_path": args.log, "note": args.note}

    def report(self, results: dict, args) -> str:
        log, log_path, note = results["log"], results["log_path"], results["note"]
        ph, cfg = log["phases"], log["config"]
        curve = ph["unet"]["loss_curve"]
        every = max(1, cfg["unet_steps"] // len(curve))
        marks = [0, 5, 10, 20, 40, 60, 80, len(curve) - 1]
        lines = [
            "# How the shipped model was trained",
            "",
            f"`cadiff shapes train --out {Path(log_path).parent} --seed {cfg['seed']}"
            + ("" if log.get("device", "cpu").startswith("cpu") else " --device cuda")
            + f"` on {log.get('device', '2 CPU cores')}; library versions: "
            + ", ".join(f"{k} {v}" for k, v in log["versions"].items()) + ".",
            "",
            *([note, ""] if note else []),
            "| phase | what | wall time | result |",
            "|---|---|---|---|",
            f"| data | render {cfg['n_images']:,} + {cfg['n_val']:,} held-out images | {ph['data']['seconds']:.0f} s | |",
            f"| evaluator | {ph['evaluator']['steps']} steps, batch {cfg['evaluator_batch']} | "
            f"{ph['evaluator']['seconds']:.0f} s | held-out accuracy "
            + " / ".join(f"{k} {v:.4f}" for k, v in ph["evaluator"]["held_out_accuracy"].items()) + " |",
            f"| VAE | {cfg['vae_steps']} steps, batch {cfg['vae_batch']} | {ph['vae']['seconds']:.0f} s | "
            f"reconstruction MSE {ph['vae']['reconstruction_mse']:.5f}; evaluator on reconstructions "
            + " / ".join(f"{v:.4f}" for v in ph["vae"]["evaluator_accuracy_on_reconstructions"].values())
            + f"; scaling factor {ph['vae']['scaling_factor']:.4f} |",
            f"| UNet + text encoder | {cfg['unet_steps']} steps, batch {cfg['unet_batch']}, v-prediction, EMA "
            f"{cfg['ema']} | {ph['unet']['seconds'] / 60:.1f} min | final v-MSE {ph['unet']['final_loss']:.4f} (mean "
            "of last 100 steps) |",
            f"| total | | {ph['total']['seconds'] / 60:.1f} min | |",
            "",
            "UNet training loss (v-MSE, single steps, sampled every " + str(every) + " steps):",
            "",
            "| step | " + " | ".join(str(m * every) for m in marks) + " |",
            "|---|" + "---|" * len(marks),
            "| loss | " + " | ".join(f"{curve[m]:.3f}" for m in marks) + " |",
            "",
        ]
        return "\n".join(lines)

    def write(self, results: dict, args, section: str, append: bool = True) -> None:
        """The whole page docs/shapes-training.md (no sections)."""
        out = DOCS / "shapes-training.md"
        if not append and not out.exists():
            raise Skip(f"no page {out.name}")
        args.doc = out
        out.write_text(self.report(results, args))
        print(out.read_text())


if __name__ == "__main__":
    ShapesTraining().main()
