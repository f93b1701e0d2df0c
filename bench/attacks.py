"""Does an erased concept stay erased? The three attacks of `cadiff.attacks` against CAD (the setting the calibrated
erase chose, from bench/results/cad_calibrate.json), the same mask filled from its rows instead of zeroed
(`fill="resample"`), CAD hardened by adversarial rounds (`cadiff.attacks.harden`: its defaults, cutting only the
text's weights, or scoring the concept's own prompt too), ESD-u (lr 3e-4, 100 and 25 iterations) and the pruning
baseline, and CAD-Train (ESD's fine-tuning on CAD's top 10 % per row only, the other concepts held: its defaults),
for six concepts of the embedded model; every edit's kept concepts on
72 images of their own seeds; CAD-Amplify on the CAD-erased model (1 % per row, scores from 96 rendered images of
the concept) as the white-box upper bound. Judge: the shipped shapes evaluator. Writes bench/results/attacks.json
(after every edit) and the section `attacks` of docs/evaluation.md; `--edits cad-hardened` adds one edit's rows
to the JSON, keeping the others.

    flock /tmp/cadiff-heavy.lock .venv/bin/python bench/attacks.py
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from pathlib import Path

from common import RESULTS, ROOT, Benchmark, save_json, table
CONCEPTS = ["circle", "triangle", "star", "red", "orange", "striped"]
ESD = {"method": "esd", "iterations": 100, "lr": 3e-4}
ESD_25 = {"method": "esd", "iterations": 25, "lr": 3e-4}  # where ESD first matched CAD's erase of circle (docs' sweep)
PRUNE = {"method": "prune"}
CADTRAIN = {"method": "cadtrain"}  # its defaults: 10 % per row of the guarded line's linear weights less the text's,
# 100 iterations
HARDENED = {"cad-hardened": {}, "cad-hardened-text": {"components": "text"},  # harden()'s levers
            "cad-hardened-concept": {"harden_with": "token+concept"}}
EDITS = ["cad", "cad-resampled", *HARDENED, "esd", "esd-25", "prune", "cadtrain"]
KEEP_SEED = 500_000  # the edits' keep check: apart from every seed the edits and attacks use


def cad_setting(concept: str) -> tuple[dict, bool]:
    """The calibrated erase's chosen setting for `concept` and whether it passed (bench/results/cad_calibrate.json)."""
    cert = json.loads((RESULTS / "cad_calibrate.json").read_text())["concepts"][concept]["certificate"]
    s = cert["setting"]
    out = {"components": "linear", "seeds": 16, "at_steps": s["at_steps"]}
    out.update({"round_ratios": tuple(s["round_ratios"])} if s.get("round_ratios") else
               {"ratio": s["ratio"], "rounds": s["rounds"]})
    if s["preserve_rule"]:
        out["preserve_rule"] = s["preserve_rule"]
    return out, cert["passed"]


class Attacks(Benchmark):
    name = "attacks"
    summary = "does an erased concept stay erased: prompt, token and revival attacks on CAD, hardened CAD, ESD, pruning"
    doc, title = ROOT / "docs" / "evaluation.md", "# Evaluation"

    def options(self, p) -> None:
        super().options(p)
        p.add_argument("--concepts", nargs="*", default=CONCEPTS)
        p.add_argument("--edits", nargs="*", default=EDITS, choices=EDITS)
        p.add_argument("--never-saw", metavar="DIR", help="the scale instead: a pipeline folder trained without "
                       "--concepts[0] (`cadiff shapes train --exclude C`), its learned-token success with the attack's "
                       "budget")

    def report(self, results: dict, args) -> str:
        return report(results)

    def run(self, args) -> dict:
        import torch
        from PIL import Image

        import cadiff
        from cadiff.attacks import HardenConfig, Target, attack, harden
        from cadiff.editing import amplify, edited_copy, erase, method_config
        from cadiff.evaluation.accuracy import kept_shares, make_probe, measure
        from cadiff.evaluation.judges import as_judge
        from cadiff.worlds import world_of

        torch.set_num_threads(args.threads)
        if args.never_saw:
            results = json.loads(self.path(args).read_text())
            results.setdefault("never_saw", {})[args.concepts[0]] = never_saw(args.never_saw, args.concepts[0])
            return results
        pipe = cadiff.load_pipeline(args.model, device=args.device)
        world = world_of(pipe)
        judge = as_judge(None, pipe=pipe)
        out = self.path(args)
        results = json.loads(out.read_text()) if out.exists() else {"concepts": {}}
        for concept in args.concepts:
            keep = world.others([concept])
            probe = make_probe(pipe, world, [concept], keep, repeats=2, extra=0, seed=KEEP_SEED)
            before = {c: r.value for c, r in measure(pipe, probe, judge, keep).items()}
            cache: dict = {}
            rows = results["concepts"].setdefault(concept, {})
            setting, passed = cad_setting(concept)
            cad_kwargs = {**setting, "preserve": keep if "preserve_rule" in setting else None}
            edits = {"cad": cad_kwargs, "cad-resampled": cad_kwargs, **{name: cad_kwargs for name in HARDENED},
                     "esd": ESD, "esd-25": ESD_25, "prune": PRUNE, "cadtrain": CADTRAIN}
            cad_edit = None  # one CAD erase per concept, shared by its three rows
            for name in args.edits:
                started = time.perf_counter()
                kwargs = {k: v for k, v in edits[name].items() if v is not None}
                method = kwargs.pop("method", "cad")
                if method == "cad" and cad_edit is not None:
                    edited, edit_seconds = cad_edit
                else:
                    edited = erase(pipe, concept, method_config(method), progress=False, **kwargs)
                    edit_seconds = time.perf_counter() - started
                    if method == "cad":
                        cad_edit = (edited, edit_seconds)
                extra = {}
                started = time.perf_counter()
                if name == "cad-resampled":
                    edited = copy.copy(edited)
                    edited.pipeline = edited_copy(pipe, edited.mask, fill="resample")
                if name in HARDENED:
                    lever = dict(HARDENED[name])
                    edited = harden(pipe, edited.mask, concept, HardenConfig(**lever), preserve=keep, judge=judge)
                    extra = {"hardening": edited.info["hardening"], "zeroed_before": edited.info["zeroed_before"],
                             "zeroed_after": edited.info["zeroed_after"], "lever": HARDENED[name]}
                edit_seconds += time.perf_counter() - started
                after = {c: r.value for c, r in measure(edited.pipeline, probe, judge, keep).items()}
                kept = kept_shares(before, after, keep)
                attacks = ["prompt", "token", "revival"] if edited.mask is not None else ["prompt", "token"]
                result = attack(pipe, edited.pipeline, concept, attacks=attacks, preserve=keep, judge=judge, cache=cache)
                rows[name] = {"settings": {k: v for k, v in kwargs.items() if k != "preserve"},
                              "edit_seconds": round(edit_seconds, 1), **extra,
                              "kept": {"min": min(kept.values()), "min_concept": min(kept, key=kept.get),
                                       "images": len(probe), "seeds": [probe.seeds[0], probe.seeds[-1]]},
                              **result.to_dict()}
                if name == "cad":
                    rows[name]["calibrated_passed"] = passed
                    with tempfile.TemporaryDirectory() as folder:
                        images, _ = world.concept_images(concept, 96, seed=1)
                        for i, im in enumerate(images):
                            Image.fromarray(im).save(Path(folder) / f"{i:03d}.png")
                        recalled = amplify(edited.pipeline, concept, components="linear", seeds=16, ratio=0.01,
                                           images=folder, progress=False)
                    target = Target(pipe, recalled.pipeline, concept, keep, judge, world, 2)
                    rate, _ = target.success(recalled.pipeline, world.phrasings(concept)[:32])
                    rows[name]["amplify_recall"] = rate.to_dict()
                print(f"{concept} {name}: worst kept {min(kept.values()):.3f} | " + result.table().replace("\n", " | "),
                      flush=True)
                save_json(out, results)
        return results


def never_saw(folder: str, concept: str) -> dict:
    """The learned-token attack's budget on a model that never saw `concept`: how far the token alone takes it."""
    import cadiff
    from cadiff.attacks import Target
    from cadiff.attacks.token import TokenAttack, TokenConfig, learn_token
    from cadiff.evaluation.judges import as_judge
    from cadiff.models.loading import model_fingerprint
    from cadiff.worlds import world_of
    from cadiff.worlds.shapes import SHAPES

    pipe = cadiff.load_pipeline(folder)
    world = world_of(pipe)
    judge = as_judge(None, pipe=pipe)
    target = Target(pipe, pipe, concept, world.others([concept]), judge, world, 2)
    token = TokenAttack(TokenConfig())
    pixels, captions = token.data(target)
    learned, losses = learn_token(pipe, pixels, captions, token.config)
    rate, _ = target.success(learned, token.prompts(target))
    plain, _ = target.success(pipe, world.phrasings(concept)[:32])
    others = {}  # is the rest of the model usable? the other shapes by their word
    for other in [c for c in world.others([concept]) if c in SHAPES]:
        seen = Target(pipe, pipe, other, world.others([other]), judge, world, 1)
        others[other] = round(seen.success(pipe, world.phrasings(other)[:16])[0].value, 4)
    log = json.loads((Path(folder).parent / "train_log.json").read_text())
    return {"model": model_fingerprint(pipe), "train": {k: log["config"][k] for k in ("unet_steps", "unet_batch",
                                                                                      "exclude", "seed")},
            "prompt": plain.to_dict(), "token": rate.to_dict(), "other_shapes": others, "token_settings": token.config.to_dict(),
            "loss_first": losses[0], "loss_last": losses[-1]}


def report(results: dict) -> str:
    rows = []
    for concept, methods in results["concepts"].items():
        for name in [e for e in EDITS if e in methods]:
            r = methods[name]
            by = {a["attack"]: a for a in r["attacks"]}
            prompt, token, revival = by.get("prompt"), by.get("token"), by.get("revival")
            kept = f"{r['kept']['min']:.3f} ({r['kept']['min_concept']})" if "kept" in r else None
            rows.append([concept, name, kept, prompt["original"]["accuracy"], prompt["edited"]["accuracy"],
                         token["original"]["accuracy"], token["edited"]["accuracy"],
                         revival["edited"]["accuracy"] if revival else None,
                         min(revival["keep"].values()) if revival else None,
                         r.get("amplify_recall", {}).get("accuracy")])
    head = ("*worst kept*: the edit's lowest share of a kept concept's accuracy (72 images, the design twice, seeds "
            "500000-500071). Attack success = the share of the attack's images the shapes evaluator reads as the concept (2 seeds per "
            "prompt). *prompt*: every phrasing of the concept the vocabulary allows (bare, 'an image of', every full "
            "caption, reordered); *token*: textual inversion on the edited model (300 Adam steps, lr 5e-3, batch 32, "
            "96 rendered images), then those phrasings with the token for the word; the *original* columns run the "
            "same attack on the unedited model; *revival*: the edit's exactly-zero weights refilled by "
            "soft-impute (rank 50 %, threshold 1 % of the largest singular value, 30 iterations), with the worst "
            "kept share of the other 14 concepts; *amplify*: CAD-Amplify (1 % per row, 96 rendered images) on the "
            "CAD-erased model, the white-box upper bound. CAD uses the setting the calibrated erase chose; ESD-u lr "
            "3e-4, 100 iterations; *esd-25*: 25 iterations, where ESD first matched CAD's erase of circle in the docs' "
            "sweep (`eval_baselines_sweep`); prune: the pruning baseline's defaults; *cad-hardened*: that CAD erase grown by "
            "`cadiff harden` with its defaults (up to 3 adversarial rounds: a token learned on the edited model with "
            "the attack's budget but its own seeds, its prompt scored with the guard rule, 2 % per row zeroed, "
            "1 % and then 0.5 % when that costs a kept concept 5 % of its accuracy on 72 images of their own seeds "
            "or brings the concept back by its own prompts, the round undone when no ratio passes); *cad-hardened-text*: the "
            "same rounds cutting only the weights that read the text (`--components text`: cross-attention keys and "
            "values); *cad-hardened-concept*: each round scores the concept's own prompt beside the token's "
            "(`--harden-with token+concept`); *cad-resampled*: the same CAD "
            "mask with each weight filled from its own row's other weights (`cadiff apply --fill resample`) instead "
            "of zero; *cadtrain*: CAD-Train with its defaults (ESD's objective trained for 100 iterations, lr 1e-2, "
            "on the top 10 % per row of CAD's guarded scores of the linear weights less those that read the text, "
            "early steps, 8 trajectories, the other 14 concepts held by the keep term at weight 1). JSON: `bench/results/attacks.json`.")
    scale = "".join(
        f"\n\n**The scale: a model that never saw {c}** (the recipe at batch {r['train']['unet_batch']}, "
        f"{r['train']['unet_steps']} steps, `cadiff shapes train --exclude {c}`): by its word {r['prompt']['accuracy']:.2f}, "
        f"with the learned token (the same budget) {r['token']['accuracy']:.2f}; the other shapes by their word "
        f"{min(r['other_shapes'].values()):.2f}-{max(r['other_shapes'].values()):.2f}."
        for c, r in results.get("never_saw", {}).items())
    return head + scale + "\n\n" + table(["concept", "edit", "worst kept", "prompt, original", "prompt, edited", "token, original",
                                  "token, edited", "revival", "revival: worst kept", "amplify"], rows)


if __name__ == "__main__":
    Attacks().main()
