"""The resampled fill: masked weights take values from their own rows, so the edit leaves no zero to locate."""

import pytest
import torch

from cadiff.attacks.revival import RevivalConfig, revive
from cadiff.editing import edited_copy
from cadiff.editing.ablate import resampled
from cadiff.attribution.mask import Mask
from cadiff.models.loading import denoiser
from tiny_pipelines import tiny_sd


def test_resampled_entries_come_from_their_own_row_and_the_rest_stays():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 10, generator=g)
    idx = torch.tensor([0, 3, 11, 12, 19, 55])  # rows 0, 1, 5
    out = resampled(w, idx, torch.Generator().manual_seed(1))
    keep = torch.ones(60, dtype=torch.bool)
    keep[idx] = False
    assert torch.equal(out.view(-1)[keep], w.view(-1)[keep])
    for i in idx.tolist():
        row = i // 10
        free = [w[row, j] for j in range(10) if row * 10 + j not in idx.tolist()]
        assert any(torch.equal(out.view(-1)[i], v) for v in free)  # a value of its own row's unmasked weights
    again = resampled(w, idx, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)  # seeded
    whole = resampled(w, torch.arange(10), torch.Generator().manual_seed(1))
    assert (whole[0] == 0).all()  # a row masked whole has nothing of its own: zero


def test_a_resampled_edit_leaves_the_revival_attack_nothing_to_refill():
    pipe = tiny_sd("sd1")
    name, p = next((n, p) for n, p in denoiser(pipe).named_parameters() if p.ndim == 2 and "to_q" in n)
    mask = Mask({name: torch.tensor([0, 1, 2, 5, 40])}, {name: tuple(p.shape)}, {"fingerprint": None})
    zeroed = edited_copy(pipe, mask, check=False)
    filled = edited_copy(pipe, mask, check=False, fill="resample", seed=3)
    new = dict(denoiser(filled).named_parameters())[name].flatten()
    assert (new[[0, 1, 2, 5, 40]] != 0).all() and not torch.equal(new, p.flatten())
    assert revive(zeroed, RevivalConfig(revival_iterations=2))[1] == {name: 5}
    assert revive(filled, RevivalConfig(revival_iterations=2))[1] == {}  # no exact zero to find
    assert torch.equal(p.flatten()[[0, 1, 2, 5, 40]], dict(denoiser(pipe).named_parameters())[name].flatten()[
        [0, 1, 2, 5, 40]])  # the original is untouched
    with pytest.raises(ValueError, match="fill must be one of zero, resample"):
        edited_copy(pipe, mask, check=False, fill="noise")
