"""CAD's scores by hand, for the tests that check `attribute` against them: w * dJ/dw, J summed from losses the test
builds out of the denoiser's own recorded calls."""

from __future__ import annotations

from typing import Iterable

import torch

EPS32 = torch.finfo(torch.float32).eps


def hand_scores(net: torch.nn.Module, names: list[str], losses: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
    """w * dJ/dw of the parameters `names` of `net`, J the sum of `losses` (a weight no loss reaches scores 0)."""
    params = dict(net.named_parameters())
    grads = {n: torch.zeros_like(params[n]) for n in names}
    for loss in losses:
        for n, g in zip(names, torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)):
            grads[n] += 0 if g is None else g
    return {n: params[n].detach() * grads[n] for n in names}


def assert_scores_equal(scores: dict[str, torch.Tensor], hand: dict[str, torch.Tensor]) -> None:
    """Each score as by hand: backward matmuls round each entry at the scale of the largest products in its
    reduction, so the error allowed is a few ulps of the tensor's max, not of each entry."""
    for n, want in hand.items():
        torch.testing.assert_close(scores[n], want, rtol=1e-4, atol=256 * EPS32 * float(want.abs().max()))
