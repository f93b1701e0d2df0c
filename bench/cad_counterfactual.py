"""The linear counterfactual and negative components, on the embedded model's erase objective for 'circle'.

CAD predicts that zeroing a set S of weights changes J by -sum_{i in S} a_i. Here J is the erase objective on
fixed recorded trajectories (z_t and the stop-gradient targets held fixed, which is what the gradient
linearises); "actual" recomputes J with S zeroed. Random ablations draw S uniformly from the ff weights.

    flock /tmp/cadiff-heavy.lock .venv/bin/python bench/cad_counterfactual.py
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from cad_common import CadBenchmark, load, table
from common import figure_link, require, settings


@torch.no_grad()
def objective(unet, steps, weight: float) -> float:
    """J on recorded steps with the current weights (targets fixed), in the model's own output units."""
    from cadiff.adapters import adapter_for

    adapter, total = adapter_for(unet), 0.0
    for s in steps:
        out = adapter.forward(unet, s.sample, s.timestep, s.kwargs)
        diff = (out.float() - s.target.float()) * s.scale.view(-1, 1, 1, 1)
        total += weight * float(diff.pow(2).sum())
    return total


class CadCounterfactual(CadBenchmark):
    name = "cad_counterfactual"
    summary = "the linear counterfactual (predicted vs actual change of J) and negative components, one erase"

    def options(self, p) -> None:
        super().options(p)
        p.add_argument("--concept", default="circle")
        p.add_argument("--seeds", type=int, default=2)
        p.add_argument("--ablations", type=int, default=300)
        p.add_argument("--fractions", nargs="*", type=float, default=[0.001, 0.003, 0.01])

    def run(self, args) -> dict:
        if args.quick:
            args.ablations, args.seeds = 6, 1

        from cadiff.attribution import Attribution, concept_prompt, select_parameters
        from cadiff.attribution.estimators import Row, erase_trajectory
        from cadiff.attribution.gradients import accumulate
        from cadiff.attribution.result import short_name
        from cadiff.editing import ablated
        from cadiff.evaluation.accuracy import concept_accuracies, edit_metrics
        from cadiff.attribution.mask import Mask
        from cadiff.models import model_fingerprint, sampling_defaults
        from cadiff.models.loading import denoiser

        pipe, evaluator = load(args)
        Path(args.img).mkdir(parents=True, exist_ok=True)
        unet = denoiser(pipe)
        d = sampling_defaults(pipe)
        prompt = concept_prompt(pipe, args.concept)
        rows = [Row(prompt, s, 0) for s in range(args.seeds)]
        steps = erase_trajectory(pipe, unet, rows, d["num_inference_steps"], d["guidance_scale"])
        params = select_parameters(unet, "ff")
        weight = 1.0 / len(rows)
        grads, values = accumulate(unet, params, steps, {0: weight})
        scores = {n: p.detach().float() * grads[0][n] for n, p in params.items()}
        attr = Attribution(scores, {"fingerprint": model_fingerprint(pipe), "concepts": [args.concept],
                                    "objective": "erase"})
        j0 = objective(unet, steps, weight)
        print(f"J = {j0:.4f} (accumulate says {values[0]:.4f})")

        names = list(scores)
        sizes = [scores[n].numel() for n in names]
        offsets = np.cumsum([0] + sizes)
        flat = torch.cat([scores[n].reshape(-1) for n in names])
        rng = np.random.default_rng(0)
        pred, actual, fracs = [], [], []
        t0 = time.time()
        for k in range(args.ablations):
            frac = args.fractions[k % len(args.fractions)]
            chosen = np.sort(rng.choice(len(flat), size=max(1, int(frac * len(flat))), replace=False))
            indices = {}
            for j, n in enumerate(names):
                inside = chosen[(chosen >= offsets[j]) & (chosen < offsets[j + 1])] - offsets[j]
                if len(inside):
                    indices[n] = torch.from_numpy(inside).long()
            mask = Mask(indices, {n: tuple(scores[n].shape) for n in indices}, {"fingerprint": attr.fingerprint})
            with ablated(pipe, mask, check=False):
                actual.append(objective(unet, steps, weight) - j0)
            pred.append(-float(flat[torch.from_numpy(chosen)].sum()))
            fracs.append(frac)
        seconds = time.time() - t0
        pred, actual, fracs = np.array(pred), np.array(actual), np.array(fracs)
        r_all = float(np.corrcoef(pred, actual)[0, 1])
        # bootstrap interval of r
        boot = []
        for _ in range(1000):
            i = rng.integers(0, len(pred), len(pred))
            boot.append(np.corrcoef(pred[i], actual[i])[0, 1])
        lo, hi = np.percentile(boot, [2.5, 97.5])

        # negative components, per layer, and what removing them does
        summary = attr.summary()
        layer_rows = [[short_name(n), v["n"], v["n_negative"], f"{v['n_negative'] / v['n']:.0%}", v["mass_negative"],
                       v["mass_positive"]] for n, v in summary["layers"].items()]
        effect_rows = []
        before = concept_accuracies(pipe, evaluator, repeats=1)
        for label, sign, ratio in (("top positive", "positive", 0.03), ("top negative", "negative", 0.03),
                                   ("all negative", "negative", 1.0)):
            mask = attr.select(ratio=ratio, sign=sign, scope="row")
            with ablated(pipe, mask, check=False):
                dj = objective(unet, steps, weight) - j0
                after = concept_accuracies(pipe, evaluator, repeats=1)
            m = edit_metrics(before, after, [args.concept])
            predicted = -sum(float(scores[n].reshape(-1)[i].sum()) for n, i in mask.indices.items())
            effect_rows.append([f"{label} (row {ratio:g})", len(mask), predicted, dj, m["target_after"],
                                m["others_after"]])
        return {"J": j0, "pred": pred.tolist(), "actual": actual.tolist(), "fractions": fracs.tolist(), "r": r_all,
                "ci95": [lo, hi], "effects": effect_rows, "settings": vars(args),
                # what the section shows besides (kept since the runner's base: older JSON lack them)
                "weights": len(flat), "seconds": seconds, "before": before, "layers": layer_rows,
                "negative": {k: summary[k] for k in ("n", "n_negative", "mass_negative", "mass_positive",
                                                     "concentration")}}

    def report(self, saved: dict, args) -> str:
        require(saved, "weights", "seconds", "before", "layers", "negative")
        s = settings(saved, args)
        pred, actual, fracs = np.array(saved["pred"]), np.array(saved["actual"]), np.array(saved["fractions"])
        per_frac = [[f"{f:g}", int((fracs == f).sum()), float(np.corrcoef(pred[fracs == f], actual[fracs == f])[0, 1])
                     if (fracs == f).sum() > 2 else float("nan")] for f in s.fractions]
        lo, hi = saved["ci95"]
        summary, before, concept = saved["negative"], saved["before"], s.concept
        model = s.model or "embedded:unet"
        return f"""### Linear counterfactual ('{concept}', erase objective, ff weights, {s.seeds} trajectories, {model})

Over {len(pred)} random ablations (random subsets of {', '.join(f'{f:.1%}' for f in s.fractions)} of the
{saved["weights"]:,} ff weights), Pearson r between the predicted change of J (-sum of the ablated scores) and the actual
change is **{saved["r"]:.3f}** (95 % bootstrap interval {lo:.3f} to {hi:.3f}); the paper reports 0.506 on SD 1.4.
J = {saved["J"]:.3f} before any ablation. {saved["seconds"]:.0f} s for all ablations.

{table(["fraction ablated", "ablations", "Pearson r"], per_frac)}

![counterfactual scatter]({figure_link(args, f"{args.section}.png")})

### Negative components

{summary['n_negative']:,} of {summary['n']:,} ff weights ({summary['n_negative'] / summary['n']:.0%}) have a negative
score for '{concept}' (their removal should raise J); negative mass {summary['mass_negative']:.3g} against
positive mass {summary['mass_positive']:.3g}. Top 0.1 % / 1 % of weights hold
{summary['concentration']['top_0.1%']:.0%} / {summary['concentration']['top_1%']:.0%} of the positive mass.

{table(["layer", "weights", "negative", "share", "negative mass", "positive mass"], saved["layers"])}

Removing them (J change predicted vs actual; accuracy of '{concept}' and mean of the others, 36 images):

{table(["zeroed", "count", "predicted dJ", "actual dJ", f"{concept} acc after", "others after"], saved["effects"])}

Before any edit: {concept} accuracy {before[concept]:.2f}, others {np.mean([v for k, v in before.items() if k != concept]):.2f}.
"""

    def figures(self, saved: dict, args) -> None:
        _scatter(np.array(saved["pred"]), np.array(saved["actual"]), np.array(saved["fractions"]), saved["r"],
                 Path(args.img) / f"{args.section}.png")


def _scatter(pred, actual, fracs, r, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.5))
    for f in sorted(set(fracs)):
        sel = fracs == f
        ax.scatter(pred[sel], actual[sel], s=8, alpha=0.7, label=f"{f:.1%} of ff weights")
    lo, hi = min(pred.min(), actual.min()), max(pred.max(), actual.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.7, label="y = x")
    ax.set_xlabel("predicted change of J  (-sum of ablated scores)")
    ax.set_ylabel("actual change of J")
    ax.set_title(f"Linear counterfactual: Pearson r = {r:.3f}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    CadCounterfactual().main()
