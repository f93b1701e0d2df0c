"""cadiff's TopK SAE side by side with SAELens's on the same activations, k, width and token budget:
held-out explained variance, L0, dead fraction, and training throughput.

SAELens runs in its own environment (default /tmp/saelens-venv; `python -m venv ... && pip install sae-lens`),
so that its heavy dependencies stay out of cadiff's. Writes the section `train` of docs/sae.md.
Run: flock /tmp/cadiff-heavy.lock .venv/bin/python bench/sae_train.py [--quick]
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from common import ROOT, settings
from sae_common import SaeBenchmark, load, shared_store, table

HOOK = "up_blocks.1.attentions.0"


class SaeTrain(SaeBenchmark):
    name = "sae_train"
    summary = "cadiff's TopK SAE against SAELens's on the same activations, k, width and token budget"

    def options(self, p) -> None:
        super().options(p)
        p.add_argument("--saelens-python", default=os.environ.get("SAELENS_PYTHON", "/tmp/saelens-venv/bin/python"))
        p.add_argument("--k", type=int, default=10)
        p.add_argument("--expansion", type=int, default=4)
        p.add_argument("--lrs", nargs="*", type=float, default=[5e-4, 1e-3, 2e-3, 4e-3],
                       help="Adam learning rates, each trainer run at every one (their dynamics differ: see the doc)")
        p.add_argument("--batch-size", type=int, default=256)
        p.add_argument("--epochs", type=int, default=2)
        p.add_argument("--seeds", type=int, default=1)

    def run(self, args) -> dict:
        import torch

        from cadiff.sae import SAETrainConfig, TopKSAE, evaluate_sae, train_sae, window_steps
        from cadiff.sae.train import geometric_median, split_shards, train_step

        pipe = load(args)
        store = shared_store(args, pipe)
        steps = window_steps("early", store.meta["num_inference_steps"])
        d_in = store.channels(HOOK)
        d_sae = args.expansion * d_in
        dead_steps = 100
        rows, notes, best = [], [], {}

        def record(trainer: str, lr: float, seed: int, m: dict, tokens: int, tps: float) -> None:
            rows.append([trainer, f"{lr:g}", seed, f"{m['explained_variance']:.4f}", m["l0"], m["dead_fraction"], tokens,
                         f"{tps:,.0f}"])
            if trainer not in best or m["explained_variance"] > best[trainer][1]:
                best[trainer] = (lr, m["explained_variance"], tps)

        for lr in args.lrs:
            for seed in range(args.seeds):
                cfg = SAETrainConfig(d_sae=d_sae, k=args.k, lr=lr, batch_size=args.batch_size, epochs=args.epochs,
                                     dead_tokens=dead_steps * args.batch_size, seed=seed)
                train_shards, eval_shards = split_shards(store, cfg)
                held_out = lambda: store.batches(HOOK, "cond", steps, 8192, shuffle=False, shards=eval_shards)  # noqa: E731
                sae, m = train_sae(store, HOOK, "cond", steps, cfg)
                record("cadiff (streamed from disk)", lr, seed, m, m["train_tokens"], m["tokens_per_second"])
                # pure compute: the same batches preloaded in memory, as the SAELens run gets them
                batches = [x for e in range(args.epochs) for x in store.batches(HOOK, "cond", steps, args.batch_size,
                                                                                seed + e, shards=train_shards)
                           if len(x) == args.batch_size]
                torch.manual_seed(seed)
                sae2 = TopKSAE(d_in, d_sae, args.k)
                with torch.no_grad():
                    sae2.b_dec.copy_(geometric_median(torch.cat(batches[:4])[: cfg.median_samples]))
                opt = torch.optim.Adam(sae2.parameters(), lr=lr)
                since = torch.zeros(d_sae, dtype=torch.long)
                t0 = time.perf_counter()
                for x in batches:
                    train_step(sae2, opt, x, since, cfg)
                compute_tps = len(batches) * args.batch_size / (time.perf_counter() - t0)
                record("cadiff (preloaded batches)", lr, seed, evaluate_sae(sae2, held_out()),
                       len(batches) * args.batch_size, compute_tps)
                if not Path(args.saelens_python).is_file():
                    notes.append(f"SAELens was not run: no interpreter at {args.saelens_python}")
                    continue
                with tempfile.TemporaryDirectory() as tmp:
                    cmd = [args.saelens_python, str(ROOT / "bench" / "sae_train_saelens.py"), str(store.path), HOOK,
                           ",".join(map(str, steps)), f"{tmp}/sae", "--k", str(args.k), "--d-sae", str(d_sae),
                           "--lr", str(lr), "--batch-size", str(args.batch_size), "--tokens", "0",
                           "--epochs", str(args.epochs), "--dead-steps", str(dead_steps), "--seed", str(seed),
                           "--threads", str(args.threads)]
                    proc = subprocess.run(cmd, capture_output=True, text=True)
                    if proc.returncode != 0:
                        notes.append(f"SAELens run failed: {proc.stderr.strip().splitlines()[-1]}")
                        continue
                    info = json.loads(proc.stdout.strip().splitlines()[-1])
                    theirs = TopKSAE.load(f"{tmp}/sae")  # read through cadiff's loader: the SAELens layout check
                    record(f"SAELens {info['sae_lens']} (preloaded batches)", lr, seed,
                           evaluate_sae(theirs, held_out()), info["tokens"], info["tokens_per_second"])
                print(rows[-3:], flush=True)
        return {"rows": rows, "best": best, "notes": notes, "steps": steps, "images": store.num_images(), "d_in": d_in,
                "d_sae": d_sae, "eval_tokens": m["eval_tokens"], "settings": vars(args)}

    def report(self, results: dict, args) -> str:
        s = settings(results, args)
        steps, d_in, d_sae = results["steps"], results["d_in"], results["d_sae"]
        summary = [[trainer, f"{lr:g}", f"{ev:.4f}", f"{tps:,.0f}"] for trainer, (lr, ev, tps) in results["best"].items()]
        return f"""### cadiff vs SAELens (same activations, k, width, token budget)

`bench/sae_train.py`: the residual update of (`{HOOK}`, conditional branch, early window = steps
{steps[0]}..{steps[-1]}), {results["images"]} images of random shapes-world prompts; d_in {d_in}, d_sae {d_sae},
k {s.k}, Adam at each lr of {s.lrs}, batch {s.batch_size}, {s.epochs} epochs over the training shards; the last shard
({results["eval_tokens"]} tokens) is held out and every SAE is scored on it by `cadiff.sae.evaluate_sae` (SAELens's
saved SAE is read through `TopKSAE.load`, which checks the layout). Dead = never fired on the held-out tokens.
Tokens/s on {s.threads} CPU threads, one benchmark at a time. SAELens keeps its own choices where
cadiff has others: its decoder init norm 0.1, rescale by decoder norm, AuxK with k_aux = d_in / 2 and coefficient
1.0, b_dec at zero; cadiff: geometric-median b_dec, unit-norm decoder rows, AuxK top-256 with weight 1/32.

The same nominal learning rate is not the same step for both: cadiff keeps decoder rows at unit norm (elements
~1/sqrt(d_in)), SAELens starts them at norm 0.1, so an Adam step of the same size moves SAELens's weights about ten
times further relative to their size. Each trainer is therefore run at every learning rate, and compared at its best.

Best of each trainer (highest held-out EV over the learning rates; tokens/s of that run):

{table(["trainer", "best lr", "explained variance", "tokens/s"], summary)}

All runs:

{table(["trainer", "lr", "seed", "explained variance", "L0", "dead fraction", "train tokens", "tokens/s"],
       results["rows"])}
{chr(10).join("- " + n for n in results["notes"])}
"""


if __name__ == "__main__":
    SaeTrain().main()
