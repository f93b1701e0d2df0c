"""The weight-revival attack on zeroing edits ("Roots Beneath the Cut", CVPR 2026): from the edited weights alone,
find the exactly-zero entries of every matrix of the denoiser and refill them by low-rank matrix completion
(soft-impute: iterate X <- P_observed(W) + P_zeroed(SVT(X)), singular values shrunk by `threshold` times the
largest and cut at `rank` times the full rank), then generate the concept's prompts. Also measures the concepts to
keep, since the attack changes the model. An edit that zeroes nothing leaves nothing to refill."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from cadiff.attacks import Attack, Outcome, Target, register_attack
from cadiff.editing.copies import with_denoiser
from cadiff.errors import BadInput
from cadiff.config import Config, option
from cadiff.models.loading import denoiser


@dataclass(frozen=True)
class RevivalConfig(Config):
    revival_rank: float = option(0.5, "weight revival: the rank kept, as a share of each matrix's (default 0.5)")
    revival_threshold: float = option(0.01, "weight revival: singular values shrunk by this share of the largest "
                                            "(default 0.01)")
    revival_iterations: int = option(30, "weight revival: soft-impute iterations (default 30)", low=1)


def soft_impute(w: torch.Tensor, missing: torch.Tensor, rank: float, threshold: float, iterations: int) -> torch.Tensor:
    """`w` with its `missing` entries filled by soft-thresholded, rank-cut SVD of the observed ones."""
    w = w.float()
    x = w.clone()
    keep = max(1, int(round(rank * min(w.shape))))
    for _ in range(iterations):
        u, s, vh = torch.linalg.svd(x, full_matrices=False)
        s = (s - threshold * s[0]).clamp_min(0)[:keep]
        low = (u[:, :keep] * s) @ vh[:keep]
        x = torch.where(missing, low, w)
    return x


def revive(pipe, cfg: RevivalConfig):
    """A copy of `pipe` whose denoiser has every exactly-zero matrix entry refilled; with per-matrix counts."""
    net = copy.deepcopy(denoiser(pipe))
    filled = {}
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.ndim != 2:
                continue
            missing = p == 0
            if missing.any():
                p.copy_(soft_impute(p, missing, cfg.revival_rank, cfg.revival_threshold, cfg.revival_iterations)
                        .to(p.dtype))
                filled[name] = int(missing.sum())
    return with_denoiser(pipe, net), filled


@register_attack
class RevivalAttack(Attack):
    name = "revival"
    summary = "refill the edited model's exactly-zero weights by low-rank matrix completion"
    config_class = RevivalConfig

    def check(self, target: Target) -> None:
        cfg = self.config
        if not 0 < cfg.revival_rank <= 1 or not 0 <= cfg.revival_threshold < 1:
            raise BadInput("--revival-rank must be in (0, 1] and --revival-threshold in [0, 1)")
        if target.world is None:
            raise BadInput("the revival attack measures the concepts to keep through the world's design; on this "
                           "model leave out --attacks revival")

    def run(self, target: Target) -> Outcome:
        from cadiff.evaluation.accuracy import make_probe, measure
        from cadiff.evaluation.accuracy import kept_shares

        prompts = target.world.phrasings(target.concept)[:32]
        revived, filled = revive(target.edited, self.config)
        edited, images = target.success(revived, prompts)
        original = target.reference(f"prompt {prompts}", lambda: target.success(target.original, prompts)[0])
        before_edit, _ = target.success(target.edited, prompts)
        probe = make_probe(target.original, target.world, [target.concept], target.keep, repeats=2, extra=0,
                           seed=300_000)
        concepts = target.keep
        ref = target.reference("keep", lambda: {c: r.value for c, r in
                                                measure(target.original, probe, target.judge, concepts).items()})
        after = {c: r.value for c, r in measure(revived, probe, target.judge, concepts).items()}
        keep = kept_shares(ref, after, concepts)
        return Outcome(self.name, self.config.to_dict(), edited, original, references={"edited, not revived":
                                                                                        before_edit},
                       keep=keep, info={"refilled": sum(filled.values()), "matrices": len(filled)}, images=images)
