"""What the proving certificate changes and costs, on the concepts whose earlier certificate said PASSED (circle,
square, triangle, star, heart, purple, orange; bench/results/cad_calibrate.json).

The search is unchanged, so each concept's chosen setting is replayed as the plain edit (the same mask), then
confirmed the new way: sequential looks (the design 4 times, doubling up to 16), two judges (the shapes evaluator,
which the search screened with, and the world's pixel reader), exact one-sided bounds at 95 % confidence. The
earlier certificate is the first look read the old way: the same 144 images on the same seeds, the evaluator only,
point estimates. One run, one machine: the first look's time is what the earlier confirmation cost.

Writes bench/results/cad_certificate.json (after every concept) and the section `cad_certificate` of docs/cad.md.

    flock /tmp/cadiff-heavy.lock .venv/bin/python bench/cad_certificate.py
"""

from __future__ import annotations

import json
import time

from common import RESULTS, ROOT, Benchmark, save_json, table
CONCEPTS = ["circle", "square", "triangle", "star", "heart", "purple", "orange"]


class CadCertificate(Benchmark):
    name = "cad_certificate"
    summary = "the proving certificate (sequential looks, two judges, exact bounds) on the concepts once passed"
    doc, img, title = ROOT / "docs" / "cad.md", ROOT / "docs" / "img" / "calibrate", "# CAD"

    def options(self, p) -> None:
        super().options(p)
        p.add_argument("--concepts", nargs="*", default=CONCEPTS)

    def run(self, args) -> dict:
        import torch

        import cadiff
        from cadiff.calibration import CalibrationConfig, Goal
        from cadiff.calibration.confirm import confirm, look_probes
        from cadiff.calibration.search import second_judges
        from cadiff.evaluation.accuracy import make_probe
        from cadiff.evaluation.judges import as_judge
        from cadiff.worlds import world_of

        out = self.path(args)
        torch.set_num_threads(args.threads)
        pipe = cadiff.load_pipeline(args.model, device=args.device)
        world = world_of(pipe)
        judges = [as_judge(None, pipe=pipe), *second_judges(pipe, world, None)]
        cal, goal = CalibrationConfig(), Goal()
        earlier = json.loads((RESULTS / "cad_calibrate.json").read_text())["concepts"]
        results = json.loads(out.read_text()) if out.exists() else {"concepts": {}}
        for concept in args.concepts:
            old = earlier[concept]["certificate"]
            keep = world.others([concept])
            s = old["setting"]
            amount = ({"round_ratios": tuple(s["round_ratios"])} if s.get("round_ratios")
                      else {"ratio": s["ratio"], "rounds": s["rounds"]})
            started = time.perf_counter()
            edit = cadiff.erase(pipe, concept, cadiff.CADConfig(), components="linear", seeds=16,
                                at_steps=s["at_steps"], preserve_rule=s["preserve_rule"] or "mean",
                                preserve=keep if s["preserve_rule"] else None, progress=False, **amount)
            replay = round(time.perf_counter() - started, 1)
            looks = look_probes(lambda repeats, seed: make_probe(pipe, world, [concept], keep, repeats=repeats,
                                                                 extra=0, seed=seed),
                                cal.confirm_repeats, cal.confirm_max_repeats, cal.confirm_seed)
            conf = confirm(pipe, edit.mask, judges, goal, [concept], keep, looks, alpha=1 - cal.confidence)
            earlier_now = {"target": old["confirmation"]["concepts"][concept]["after"]["accuracy"],
                           "kept_min": old["confirmation"]["kept_min"], "zeroed_then": old["chosen"]["zeroed"],
                           "zeroed_now": len(edit.mask)}
            results["concepts"][concept] = {"setting": old["chosen"]["label"], "replay_seconds": replay,
                                            "earlier": earlier_now, "confirmation": conf.to_dict(),
                                            "outcome": conf.outcome}
            print(f"{concept}: {conf.outcome} ({conf.images} images in {conf.looks} looks, {sum(conf.seconds):.0f} s; "
                  f"first look {conf.seconds[0]:.0f} s; {len(edit.mask)} weights, earlier {old['chosen']['zeroed']})",
                  flush=True)
            save_json(out, results)
        return results

    def report(self, results: dict, args) -> str:
        return report(results)


def report(results: dict) -> str:
    rows = []
    for concept, r in results["concepts"].items():
        conf, old = r["confirmation"], r["earlier"]
        claims = conf["claims"]
        judges = list(dict.fromkeys(x["judge"] for x in claims))
        target = {x["judge"]: x for x in claims if x["concept"] == concept}
        keep = [x for x in claims if x["kind"] == "keep"]
        worst = min(keep, key=lambda x: x["value"])
        open_ = [x for x in claims if x["status"] != "proven"]
        rows.append([concept, r["setting"], f"{old['target']:.2f} / {old['kept_min']:.3f}: passed",
                     " / ".join(f"{target[j]['value']:.2f} (<= {target[j]['bound']:.2f}, n={target[j]['after']['n']})"
                                for j in judges),
                     f"{worst['value']:.3f} {worst['concept']} ({worst['judge'].split(':')[0]})",
                     r["outcome"], f"{len(open_)} of {len(claims)}",
                     f"144 / {conf['images']}", f"{conf['seconds'][0]:.0f} / {sum(conf['seconds']):.0f}"])
    head = ("The concepts whose earlier certificate said PASSED (one judge, the 144 images of the design 4 times, "
            "point estimates), their chosen settings replayed and confirmed the new way: the shapes evaluator (the "
            "search's judge) and the world's pixel reader (colour, shape and texture read from pixels by rules, no "
            "training), each claim proven by an exact one-sided bound at 95 % confidence, the design added again "
            "(doubling to 16 times, 576 images) only while a claim is undecided. Target: its rate after the edit per "
            "judge (evaluator / pixels) with its upper bound and n; worst kept: the lowest kept share of any judge. "
            "Cost: the earlier confirmation's images and time (the first look: the same images on the same seeds) "
            "against the whole sequential confirmation, seconds on 2 CPU threads in one run; the search before it is "
            "unchanged. JSON: `bench/results/cad_certificate.json`; `bench/cad_certificate.py` makes it.")
    text = table(["concept", "chosen setting", "earlier (target / worst kept)", "target now: evaluator / pixels",
                  "worst kept now", "outcome", "claims not proven", "images: earlier / now", "seconds: earlier / now"],
                 rows)
    return head + "\n\n" + text


if __name__ == "__main__":
    CadCertificate().main()
