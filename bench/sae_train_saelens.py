"""The SAELens side of bench/sae_train.py: train SAELens's TopK SAE on the same activation stream.

Runs in a separate environment with `sae-lens` installed (its dependencies stay out of cadiff's venv):
    /tmp/saelens-venv/bin/python bench/sae_train_saelens.py STORE HOOKPOINT STEPS OUT --k 10 --d-sae 512 ...
Prints one JSON line: tokens, seconds, tokens_per_second; the SAE is saved (inference layout) into OUT.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("store")
    ap.add_argument("hookpoint")
    ap.add_argument("steps", help="comma-separated steps")
    ap.add_argument("out")
    ap.add_argument("--branch", default="cond")
    ap.add_argument("--k", type=int, required=True)
    ap.add_argument("--d-sae", type=int, required=True)
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--batch-size", type=int, required=True)
    ap.add_argument("--tokens", type=int, required=True)
    ap.add_argument("--epochs", type=int, required=True)
    ap.add_argument("--dead-steps", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import sae_lens
    import torch
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    from cadiff.sae.store import ActivationStore
    from cadiff.sae.train import SAETrainConfig, split_shards

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    store = ActivationStore(args.store)
    steps = [int(s) for s in args.steps.split(",")]
    train_shards, _ = split_shards(store, SAETrainConfig())
    d_in = store.channels(args.hookpoint)

    def stream():  # the same batches, in the same order, as cadiff's trainer sees
        for epoch in range(args.epochs):
            yield from store.batches(args.hookpoint, args.branch, steps, args.batch_size, args.seed + epoch,
                                     shards=train_shards)

    batches = [x for x in stream() if len(x) == args.batch_size]  # SAELens wants full batches
    cfg = TopKTrainingSAEConfig(d_in=d_in, d_sae=args.d_sae, k=args.k, dtype="float32", device="cpu")
    sae = TopKTrainingSAE(cfg)
    trainer_cfg = SAETrainerConfig(total_training_samples=len(batches) * args.batch_size,
                                   train_batch_size_samples=args.batch_size, lr=args.lr, lr_end=args.lr,
                                   dead_feature_window=args.dead_steps, feature_sampling_window=10**9,
                                   n_batches_for_norm_estimate=1)
    trainer = SAETrainer(trainer_cfg, sae, iter(batches))
    t0 = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - t0
    sae.save_inference_model(args.out)
    tokens = len(batches) * args.batch_size
    print(json.dumps({"tokens": tokens, "seconds": seconds, "tokens_per_second": tokens / seconds,
                      "sae_lens": sae_lens.__version__}))


if __name__ == "__main__":
    main()
