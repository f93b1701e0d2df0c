"""CAD-Train's second round of levers on one concept of the embedded model, each against the learned token: where
it trains (CAD's top 10 % per row of the linear weights, with or without the weights that read the text, without any
cross-attention, or ESD-u's whole parameter set), what it erases (the concept's prompt, every phrasing of it with
ESD's target or with the phrasing's own output less the concept's direction, or an adversarial round that adds a
token learned on the model half-trained), and how hard (ESD's eta). The other 14 concepts are held by the keep term
at weight 1 throughout. Each edit: its target accuracy and worst kept share on 72 images of the design (seeds
500000-500071), and the learned-token attack's success with the attack bench's budget (`cadiff.attacks`, seeds 0).

The variants that the library does not offer (phrasings, anchored targets, the adversarial round) are written here,
as changes to the fine-tuning loop of `cadiff.editing.methods.esd.fine_tune`; the winning lever (no text weights)
is the library's default since (`CADTrainConfig.train_text`).

Writes bench/results/cadtrain_levers.json and the section `cadtrain_levers` of docs/evaluation.md.

    flock /tmp/cadiff-heavy.lock .venv/bin/python bench/cadtrain_levers.py --concept circle
"""

from __future__ import annotations

import copy
import re
import time

from common import ROOT, Benchmark, table

KEEP_SEED = 500_000
VARIANTS = {  # name: (where, erase prompts, target, eta, iterations, lr)
    "text": ("linear, 10 % per row", "concept", "ESD", 1.0, 100, 1e-2),  # CAD-Train before: the text weights too
    "notext": ("linear less the text's keys and values, 10 % per row", "concept", "ESD", 1.0, 100, 1e-2),
    "noxattn": ("linear less all cross-attention, 10 % per row", "concept", "ESD", 1.0, 100, 1e-2),
    "esdu_keep": ("ESD-u's parameters, whole", "concept", "ESD", 1.0, 100, 3e-4),
    "phrasings": ("linear, 10 % per row", "every phrasing", "ESD", 1.0, 100, 1e-2),
    "phr_anchor_notext": ("linear less the text's keys and values, 10 % per row", "every phrasing", "anchored", 1.0,
                          100, 1e-2),
    "adv_notext": ("linear less the text's keys and values, 10 % per row", "concept, then + a learned token", "ESD",
                   1.0, 120, 1e-2),
    "notext_eta3": ("linear less the text's keys and values, 10 % per row", "concept", "ESD", 3.0, 100, 1e-2),
}


class CADTrainLevers(Benchmark):
    name = "cadtrain_levers"
    summary = "CAD-Train's levers against the learned token: where it trains, what it erases, how hard"
    doc, title = ROOT / "docs" / "evaluation.md", "# Evaluation"

    def options(self, p) -> None:
        super().options(p)
        p.add_argument("--concept", default="circle")
        p.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))

    def run(self, args) -> dict:
        import numpy as np
        import torch

        import cadiff
        from cadiff.adapters import adapter_for
        from cadiff.attacks import Target, attack
        from cadiff.attacks.token import TOKEN, TokenAttack, TokenConfig, learn_token
        from cadiff.attribution import Concepts, attribute
        from cadiff.attribution.config import GuardedAttributionConfig
        from cadiff.editing.copies import with_denoiser
        from cadiff.editing.methods.esd import esd_parameter_names
        from cadiff.evaluation.accuracy import kept_shares, make_probe, measure
        from cadiff.evaluation.judges import as_judge
        from cadiff.models.loading import denoiser, resolve_sampling
        from cadiff.models.trace import DenoiserTrace, conditioning, generators, sample
        from cadiff.worlds import world_of

        torch.set_num_threads(args.threads)
        pipe = cadiff.load_pipeline(args.model)
        world, judge = world_of(pipe), as_judge(None, pipe=pipe)
        concept, keep = args.concept, world.others([args.concept])
        probe = make_probe(pipe, world, [concept], keep, repeats=2, extra=0, seed=KEEP_SEED)
        before = {c: r.value for c, r in measure(pipe, probe, judge, [concept, *keep]).items()}
        concepts = Concepts.on(pipe, [concept], keep, base_prompt="")
        (attr,) = attribute(pipe, concepts, GuardedAttributionConfig(seeds=8), progress=False)
        frozen = denoiser(pipe).eval().requires_grad_(False)
        adapter = adapter_for(frozen)
        steps, _ = resolve_sampling(pipe, None)
        empty, own = conditioning(pipe, [""]), conditioning(pipe, [concepts.prompts[0]])
        iterations = 2 if args.quick else None

        def region(drop: str | None = None) -> dict:
            chosen = attr.select(ratio=0.1, scope="row").booleans()
            return {n: m for n, m in chosen.items() if drop is None or not re.search(drop, n)}

        def train(where: dict, prompts: list[str], n: int, lr: float, eta: float = 1.0, anchored: bool = False,
                  student=None, text=None, seed: int = 0):
            """fine_tune's loop, with erase prompts taken in turn (the target always guided away from the concept's
            own prompt, or, `anchored`, the prompt's own output less the concept's direction) and a sampler whose
            text encoder may know a learned token."""
            student = student if student is not None else copy.deepcopy(frozen)
            params = []
            for name, p in student.named_parameters():
                p.requires_grad_(name in where)
                if name in where:
                    params.append(p)
                    if where[name] is not None:
                        p.register_hook(lambda g, w=where[name].to(p.dtype): g * w)
            edited = with_denoiser(pipe, student)
            sampler = copy.copy(edited)
            if text is not None:
                sampler.tokenizer, sampler.text_encoder = text
            rng, optimizer = np.random.default_rng(seed), torch.optim.Adam(params, lr=lr)

            def reached(model, prompt: str, k: int, it: int):
                with DenoiserTrace(model, record=1) as trace:
                    sample(model, [prompt], generators([seed * 1_000_003 + it]), steps, 3.0, until=k)
                return trace.steps[k]

            for it in range(iterations or n):
                k, prompt = int(rng.integers(0, steps)), prompts[it % len(prompts)]
                with torch.no_grad():
                    call = reached(sampler if TOKEN in prompt else edited, prompt, k, it)
                    e_empty = adapter.forward(frozen, call.sample, call.timestep, empty)
                    e_concept = adapter.forward(frozen, call.sample, call.timestep, own)
                    target = e_empty - eta * (e_concept - e_empty)
                    if anchored:
                        e_prompt = adapter.forward(frozen, call.sample, call.timestep, call.kwargs)
                        target = e_prompt - (1 + eta) * (e_concept - e_empty)
                    kept = reached(edited, concepts.keep_prompts[it % len(keep)], k, it)
                    kept_target = adapter.forward(frozen, kept.sample, kept.timestep, kept.kwargs)
                out = adapter.forward(student, call.sample, call.timestep, call.kwargs)
                loss = torch.nn.functional.mse_loss(out.float(), target.float())
                kept_out = adapter.forward(student, kept.sample, kept.timestep, kept.kwargs)
                loss = loss + torch.nn.functional.mse_loss(kept_out.float(), kept_target.float())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            student.eval().requires_grad_(False)
            return edited, student

        text_weights, cross = adapter.text_input, adapter.cross_attention
        plain, phrasings = [concepts.prompts[0]], world.phrasings(concept)
        cache, rows = {}, []
        for name in args.variants:
            _, _, _, eta, n, lr = VARIANTS[name]
            started = time.perf_counter()
            if name == "esdu_keep":
                edited, _ = train({p: None for p in esd_parameter_names(frozen, "u")}, plain, n, lr)
            elif name == "adv_notext":  # half the iterations, a token learned on that model, the rest with it
                edited, student = train(region(text_weights), plain, n // 2, lr)
                config = TokenConfig(token_seed=7)  # not the attack's seed
                pixels, captions = TokenAttack(config).data(Target(pipe, edited, concept, keep, judge, world, 2))
                learned, _ = learn_token(edited, pixels, captions, config)
                edited, _ = train(region(text_weights), [*plain, f"a {TOKEN}"], n // 2, lr, student=student,
                                  text=(learned.tokenizer, learned.text_encoder), seed=1)
            else:
                drop = {"text": None, "noxattn": cross, "phrasings": None}.get(name, text_weights)
                edited, _ = train(region(drop), phrasings if name.startswith("phr") else plain, n, lr, eta,
                                  anchored=name == "phr_anchor_notext")
            seconds = time.perf_counter() - started
            after = {c: r.value for c, r in measure(edited, probe, judge, [concept, *keep]).items()}
            kept = kept_shares(before, after, keep)
            token = attack(pipe, edited, concept, attacks=["token"], preserve=keep, judge=judge, cache=cache)
            rows.append({"variant": name, "target": after[concept], "kept_min": min(kept.values()),
                         "kept_min_concept": min(kept, key=kept.get), "token": token.outcomes[0].edited.value,
                         "train_s": round(seconds, 1)})
            print(rows[-1], flush=True)
        return {"concept": concept, "images": len(probe), "rows": rows, "settings": {"threads": args.threads}}

    def report(self, results: dict, args) -> str:
        head = (f"CAD-Train's levers on {results['concept']} (`bench/cadtrain_levers.py`): one CAD attribution (the "
                "guarded line, 8 trajectories), then each fine-tuning with the other 14 concepts held by the keep term; "
                "*where*: the weights that may move; *erases*: the prompts of the erase term (*every phrasing*: the "
                "bare prompt, 'an image of', every full caption; *+ a learned token*: half the iterations, then a "
                "token learned on that model (its own seed) joins the concept's prompt); *target*: ESD's (the "
                "frozen model's output guided away from the concept's prompt) or *anchored* (the phrasing's own "
                "output less 1 + eta times the concept's direction); *token*: the learned-token attack's success "
                "(the attack bench's budget); *worst kept*: the lowest share of its accuracy another concept keeps "
                f"({results['images']} images of the design, seeds 500000-500071); *seconds*: the fine-tuning "
                "(the token round's learning included). JSON: `bench/results/cadtrain_levers.json`."
                + (f" ({results['source']}.)" if "source" in results else ""))
        rows = []
        for r in results["rows"]:
            where, erases, target, eta, n, lr = VARIANTS[r["variant"]]
            rows.append([where, erases, target, f"{eta:g}", n, f"{lr:g}", f"{r['target']:.2f}",
                         f"{r['kept_min']:.2f} ({r['kept_min_concept']})", f"{r['token']:.2f}", f"{r['train_s']:.0f}"])
        return head + "\n\n" + table(["where", "erases", "target", "eta", "iterations", "lr", "concept after",
                                      "worst kept", "token", "seconds"], rows)


if __name__ == "__main__":
    CADTrainLevers().main()
