"""Steering through concept vectors on the embedded model, window by window (early / middle / final):
spatial (push the object's latents into a target quadrant) and global (add a colour latent everywhere).

Spatial success = the generated shape's centre lies in the target quadrant (chance 0.25); style success = the
shapes evaluator sees the requested colour; change = mean absolute pixel difference to the unsteered image.
One SAE per window (the model's first bench hookpoint: the U-Net's mid block; conditional branch). Writes the section `steer` of docs/sae.md and the grids
docs/img/sae_steer_spatial.png, docs/img/sae_steer_global.png.
Run: flock /tmp/cadiff-heavy.lock .venv/bin/python bench/sae_steer.py [--quick]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from common import figure_link, settings
from sae_common import SHORT, SaeBenchmark, hooks, load, shared_store, table, tagged, window_sae

WINDOWS = ("early", "middle", "final")


def object_latents(entries: list[dict], n: int = 3) -> list[int]:
    """The n latents that best match the object mask (IoU rule), most frequent first among equals."""
    ranked = sorted(entries, key=lambda e: (-e["object_match"], -e["fires"]))
    return [e["latent"] for e in ranked[:n]]


class SaeSteer(SaeBenchmark):
    name = "sae_steer"
    summary = "steering through SAE concept vectors window by window: spatial (a quadrant) and global (a colour)"

    def options(self, p) -> None:
        super().options(p)
        p.add_argument("--seeds", type=int, default=8, help="images per (prompt set, quadrant / colour)")
        p.add_argument("--strength", type=float, default=3.0,
                       help="edit size in units of the mean norm of the update at a position (sets beta)")
        p.add_argument("--hook", default=None, choices=sorted(SHORT),
                       help="hookpoint of the SAEs (default: the model's first bench hookpoint, the U-Net's mid block)")

    def run(self, args) -> dict:
        import cadiff
        from cadiff.report import image_grid, stack_grids
        from cadiff.sae import steer, window_steps
        from cadiff.sae.concepts import concept_dictionary, latent_codes
        from cadiff.sae.steering_eval import change, intact, quadrant_of, spatial_success, style_success
        from cadiff.worlds.shapes import COLOURS, SHAPES, load_evaluator

        pipe = load(args)
        HOOK = args.hook or hooks(pipe)[0]
        if HOOK not in hooks(pipe):
            raise SystemExit(f"--hook {HOOK} is not one of this model's bench hookpoints: {', '.join(hooks(pipe))}")
        args.section = name = tagged(args, "steer" if HOOK == hooks(pipe)[0] else f"steer_{SHORT[HOOK]}")
        ev = load_evaluator(args.evaluator)
        store = shared_store(args, pipe)
        n_steps = store.meta["num_inference_steps"]
        seeds = list(range(5000, 5000 + (3 if args.quick else args.seeds)))
        quadrants = ("top-left", "bottom-right")

        # spatial: every quadrant, prompts of all shapes; global: colour c -> the next colour
        sp_prompts = [f"a {COLOURS[i % 6]} solid {SHAPES[i % 6]}" for i in range(len(seeds))]
        sp_shapes, sp_colours = [SHAPES[i % 6] for i in range(len(seeds))], [COLOURS[i % 6] for i in range(len(seeds))]
        gl_source = [COLOURS[i % 6] for i in range(len(seeds))]
        gl_target = [COLOURS[(i + 3) % 6] for i in range(len(seeds))]
        gl_prompts = [f"a {c} solid {SHAPES[(i + 1) % 6]}" for i, c in enumerate(gl_source)]
        kw = dict(steps=n_steps)
        sp_plain = cadiff.generate(pipe, sp_prompts, seeds, **kw)
        gl_plain = cadiff.generate(pipe, gl_prompts, seeds, **kw)
        base_sp = np.mean([spatial_success(sp_plain, q) for q in quadrants])
        base_gl = float(np.mean([style_success(gl_plain[i:i + 1], t, ev) for i, t in enumerate(gl_target)]))

        rows, sp_grid, gl_grid = [], {}, {}
        for window in WINDOWS:
            steps = window_steps(window, n_steps)
            sae, m = window_sae(args, store, HOOK, window)
            codes = latent_codes(store, sae, steps[0])
            entries = concept_dictionary(codes)
            objects = object_latents(entries)
            colour_latents = {c: _safe_latents(entries, c) for c in COLOURS}
            # beta from the data: the edit's norm at a position is about `strength` x the mean update norm there
            delta = next(store.activations(HOOK, "cond", steps[:1]))[:, 0]
            delta_norm = delta.norm(dim=-1).mean().item()
            code_norm = codes.codes.norm(dim=-1).mean().item()
            sp_betas = [round(args.strength * delta_norm / (code_norm * np.sqrt(len(objects))), 3)]
            gl_betas = [round(args.strength * delta_norm * delta.shape[1], 3)]
            for beta in sp_betas:
                success, moved, whole, clean = [], [], [], []
                for q in quadrants:
                    with steer(pipe, sae, objects, mode="spatial", beta=beta, at_steps=window, quadrant=q, steps=n_steps):
                        out = cadiff.generate(pipe, sp_prompts, seeds, **kw)
                    success.append(spatial_success(out, q))
                    kept = intact(out, sp_shapes, sp_colours, ev)
                    whole.append(kept.mean())
                    clean.append(np.mean([quadrant_of(im) == q and k for im, k in zip(out, kept)]))
                    moved.append(change(sp_plain, out))
                    if q == "top-left":
                        sp_grid[window] = out
                rows.append([window, "spatial", beta, f"{objects}", float(np.mean(success)), float(base_sp),
                             float(np.mean(whole)), float(np.mean(clean)), float(np.mean(moved)), m["explained_variance"]])
            for beta in gl_betas:
                out = np.empty_like(gl_plain)
                for target in sorted(set(gl_target)):
                    idx = [i for i, t in enumerate(gl_target) if t == target]
                    with steer(pipe, sae, colour_latents[target], mode="global", beta=beta, at_steps=window, steps=n_steps):
                        out[idx] = cadiff.generate(pipe, [gl_prompts[i] for i in idx], [seeds[i] for i in idx], **kw)
                hit = float(np.mean([style_success(out[i:i + 1], t, ev) for i, t in enumerate(gl_target)]))
                gl_shapes = [SHAPES[(i + 1) % 6] for i in range(len(seeds))]
                shape_kept = float(np.mean([style_success(out[i:i + 1], sh, ev) for i, sh in enumerate(gl_shapes)]))
                rows.append([window, "global (colour)", beta, "per target colour", hit, base_gl, shape_kept, None,
                             change(gl_plain, out), m["explained_variance"]])
                gl_grid[window] = out
        img = Path(args.img)
        img.mkdir(parents=True, exist_ok=True)
        n_show = min(8, len(seeds))
        stack_grids([image_grid(sp_plain[:n_show], cols=n_show)] + [image_grid(sp_grid[w][:n_show], cols=n_show)
                                                                    for w in WINDOWS],
                    ["unsteered"] + [f"spatial to top-left, {w} window" for w in WINDOWS]
                    ).save(img / f"sae_{name}_spatial.png")
        stack_grids([image_grid(gl_plain[:n_show], cols=n_show)] + [image_grid(gl_grid[w][:n_show], cols=n_show)
                                                                    for w in WINDOWS],
                    ["unsteered: " + ", ".join(gl_source[:n_show])]
                    + [f"global colour -> {', '.join(gl_target[:n_show])}, {w} window" for w in WINDOWS]
                    ).save(img / f"sae_{name}_global.png")
        return {"rows": rows, "seeds": len(seeds), "hook": HOOK, "settings": vars(args)}

    def report(self, results: dict, args) -> str:
        s = settings(results, args)
        HOOK, n, name = results["hook"], results["seeds"], args.section
        return f"""### Steering by window ({SHORT[HOOK]}, strength {s.strength})

`bench/sae_steer.py`: one SAE per window on `{HOOK}` (the concept bench's: conditional branch, k 10, d_sae = 4 x width),
steering applied at every step of the window on the conditional branch. Spatial: the 3 latents whose maps best
match the object mask, set to beta x ||Z[i,j]|| inside the target quadrant and 0 outside; {n} prompts
"a <colour> solid <shape>" x 2 target quadrants (top-left, bottom-right). Global: the latent that stands most for the target colour
(highest purity among its top images), added with beta x ||Z[i,j]|| / sum ||Z||; {n} prompts, each steered
from its colour to the colour three steps on. Chance for spatial success 0.25; "unsteered" = the same score on
the unsteered images. Change = mean |pixel difference| in [0, 1] (not LPIPS). Beta is not tuned per window as in the paper but
set from the data so that the edit's norm at a position is about {s.strength} x the window's mean update norm
(betas in the table). With {n * 2} spatial and {n} global images per cell, a success rate has a
standard error of about {np.sqrt(0.25 / (n * 2)):.2f} (spatial) and {np.sqrt(0.25 / n):.2f} (global).

"Intact" = the evaluator still reads the prompted shape and colour (global rows: the prompted shape), so an edit
that lands a smear in the quadrant is not a success; "success and intact" counts only images that are both.

{table(["window", "mode", "beta", "latents", "success", "unsteered", "intact", "success and intact", "change",
        "SAE EV"], results["rows"])}

![spatial steering]({figure_link(args, f"sae_{name}_spatial.png")})
![global steering]({figure_link(args, f"sae_{name}_global.png")})
"""


def _safe_latents(entries, colour):
    from cadiff.sae.concepts import latents_for

    try:
        return latents_for(entries, colour, n=1)
    except ValueError:
        return []


if __name__ == "__main__":
    SaeSteer().main()
