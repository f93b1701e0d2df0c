"""Concepts and early composition on the embedded model: per (hookpoint, step) SAEs, their concept dictionary
(object / background latents, cohesion, separability), object-map IoU against the final image's mask, and linear
probes that read the final shape, colour, texture and position from the activations of every step.

Writes the sections `concepts` and `composition` of docs/sae.md, concept cards docs/img/sae_cards_*.png and
docs/img/sae_probes_by_step.png.
Run: flock /tmp/cadiff-heavy.lock .venv/bin/python bench/sae_concepts.py [--quick]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from common import figure_link, settings
from sae_common import SHORT, SaeBenchmark, hooks, load, shared_store, table, tagged, window_sae

STEP_WINDOW = {0: "early", 12: "middle", 24: "final"}  # first, middle and last step of the 25-step schedule


class SaeConcepts(SaeBenchmark):
    name = "sae_concepts"
    summary = "per (hookpoint, step) SAEs: concept dictionary, object-map IoU, probes of the final image at every step"

    def section(self, args) -> str:
        return getattr(args, "section", None) or tagged(args, "concepts")

    def run(self, args) -> dict:
        from cadiff.sae.composition import object_map_iou, probe_scores
        from cadiff.sae.concepts import (cohesion_separability, concept_cards, concept_dictionary, latent_codes,
                                         pick_latents)

        pipe = load(args)
        img = Path(args.img)
        img.mkdir(parents=True, exist_ok=True)
        concept_rows, comp_rows = [], []
        store = shared_store(args, pipe)
        first, second = hooks(pipe)
        for hook in (first, second):
            for step, window in STEP_WINDOW.items():
                sae, m = window_sae(args, store, hook, window)
                codes = latent_codes(store, sae, step)
                entries = concept_dictionary(codes)
                kinds = [e["kind"] for e in entries]
                cs = cohesion_separability(codes, entries)
                concept_rows.append([SHORT[hook], f"{step} ({window} SAE)", m["explained_variance"], m["dead_fraction"],
                                     kinds.count("object"), kinds.count("background"),
                                     *[cs[a][key] for a in ("shape", "colour", "texture")
                                       for key in ("cohesion", "separability")]])
                om = object_map_iou(codes)
                comp_rows.append([SHORT[hook], step, om["iou"], om["iou_not_background"], om["baseline_mean_mask"],
                                  om["ceiling_grid"], om["object_latents"], om["background_latents"]])
                if step in (0, 24):
                    sheet = concept_cards(codes, entries, pick_latents(entries, 12))
                    sheet.save(img / f"sae_cards_{SHORT[hook]}_step{step}.png")  # SHORT names the model too

        # probes from the mid block at every stored step: how much of the final image is already readable
        probe_rows, curves = [], {}
        for step in store.steps:
            res = probe_scores(store, first, step)
            open_ = probe_scores(store, first, step, only_open=True)
            for key in ("shape", "colour", "texture", "position"):
                curves.setdefault(key, []).append(res[key]["accuracy"] if key in res else np.nan)
                if key != "position":
                    curves.setdefault(key + " (open)", []).append(open_[key]["accuracy"] if key in open_ else np.nan)
            if step in (0, (store.meta["num_inference_steps"] - 1) // 2, store.meta["num_inference_steps"] - 1):
                probe_rows.append([step] + [f"{res[k]['accuracy']:.2f} (chance {res[k]['chance']:.2f})" if k in res
                                            else "-" for k in ("shape", "colour", "texture", "position")]
                                  + [f"{open_[k]['accuracy']:.2f} (n={open_[k]['n_test']})" if k in open_ else "-"
                                     for k in ("shape", "colour", "texture")])
        return {"concepts": concept_rows, "composition": comp_rows, "probes": probe_rows, "curves": curves,
                "steps": list(store.steps), "images": store.num_images(), "hooks": [first, second],
                "settings": vars(args)}

    def report(self, results: dict, args) -> dict[str, str]:
        s = settings(results, args)
        first, second = results["hooks"]
        n_img = results["images"]
        concepts = f"""### Concept dictionary per step

`bench/sae_concepts.py`: one SAE per (hookpoint, window), conditional branch, k 10, d_sae = 4 x width, about 60k
training tokens each (several epochs over the window's steps of {n_img} images of random shapes-world prompts; the
last of 4 shards held out for EV), read at the first (0), middle (12) and last (24) step. With {n_img} images the
numbers are indicative: a proportion over the ~38 held-out images has a standard error up to 0.08. A latent is an *object* latent when, on most of its top-16 images, its map (normalised,
upsampled, threshold 0.1) has IoU > 0.5 with the final image's object mask (masks of generated images: pixels that
differ from the border colour); *background* when that holds for the background. Cohesion = mean purity of the
attribute among the top images of object latents; separability = mean over the attribute's values of the best
single latent's AUROC (image peak activation, that value against the rest; 0.5 = chance). Labels are what the
shapes evaluator reads off the final image.

{table(["block", "step", "EV", "dead", "object latents", "background latents", "shape cohesion", "shape separ.",
        "colour cohesion", "colour separ.", "texture cohesion", "texture separ."], results["concepts"])}

Concept cards (top images of each latent, lit by its activation map; dark = silent):

![{SHORT[second]}, first step]({figure_link(args, f"sae_cards_{SHORT[second]}_step0.png")})
![{SHORT[second]}, last step]({figure_link(args, f"sae_cards_{SHORT[second]}_step24.png")})
![{SHORT[first]}, first step]({figure_link(args, f"sae_cards_{SHORT[first]}_step0.png")})
![{SHORT[first]}, last step]({figure_link(args, f"sae_cards_{SHORT[first]}_step24.png")})
"""
        composition = f"""### Early composition

Object map: on 70 % of the images latents are labelled as above; on the other 30 % a position is predicted
"object" when its top latent is an object latent (second rule: when its top latent is not a background latent),
and the map is compared with the final image's mask (IoU; 38 held-out images).
Baseline: the mean training mask thresholded at 0.5 (a fixed blob). Ceiling: the true mask pooled to the feature grid
and upsampled again (the best any map on that grid can do).

{table(["block", "step", "IoU: top latent is object", "IoU: top latent not background", "blob baseline",
        "grid ceiling", "object latents", "background latents"], results["composition"])}

Linear probes (ridge, 70/30 split) from `{first}`'s conditional activations at a step to the final image: shape,
colour, texture as the evaluator reads them, position = quadrant of the object's centre. "open" = only images whose
prompt did not name that attribute, so the noise, not the text, decides it.

{table(["step", "shape", "colour", "texture", "position", "shape (open)", "colour (open)", "texture (open)"],
       results["probes"])}

![probe accuracy by step]({figure_link(args, f"{tagged(s, 'sae_probes_by_step')}.png")})
"""
        return {tagged(s, "concepts"): concepts, tagged(s, "composition"): composition}

    def figures(self, results: dict, args) -> None:
        s = settings(results, args)
        _plot(results["steps"], results["curves"], Path(args.img) / f"{tagged(s, 'sae_probes_by_step')}.png",
              SHORT[results["hooks"][0]])


def _plot(steps, curves, path, block: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4))
    for name, ys in curves.items():
        ax.plot(steps, ys, marker="o" if "open" not in name else ".", linestyle="-" if "open" not in name else "--",
                label=name)
    ax.set_xlabel("sampling step (0 = first, t = 1)")
    ax.set_ylabel("held-out probe accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"what {block} already says about the final image")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    SaeConcepts().main()
