"""The TopK SAE: exact sparsity, unit decoder rows, AuxK revival, files (cadiff's and SAELens's), training/resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cadiff.sae import ActivationStore, SAETrainConfig, TopKSAE, geometric_median, train_sae
from cadiff.sae.train import train_step

DATA = Path(__file__).parent / "data"


def planted(n: int, d: int = 8, atoms: int = 16, per: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n vectors, each a positive combination of `per` of `atoms` random unit directions; returns (x, directions)."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(atoms, d, generator=g)
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    idx = torch.stack([torch.randperm(atoms, generator=g)[:per] for _ in range(n)])
    coef = 1 + torch.rand(n, per, generator=g)
    return (coef[..., None] * dirs[idx]).sum(1), dirs


def test_topk_keeps_exactly_k():
    sae = TopKSAE(16, 64, k=5)
    with torch.no_grad():
        sae.b_enc.fill_(1.0)  # every pre-activation positive, so ReLU cannot hide any
    z = sae.encode(torch.randn(100, 16))
    assert ((z != 0).sum(-1) == 5).all()
    z = sae.encode(torch.randn(3, 16))
    assert ((z > 0).sum(-1) <= 5).all()
    with pytest.raises(ValueError, match="dictionary size"):
        TopKSAE(16, 8, k=9)


def test_geometric_median_ignores_outliers():
    x = torch.cat([torch.randn(200, 4) * 0.1 + 3.0, torch.full((20, 4), 1000.0)])
    assert (geometric_median(x) - 3.0).abs().max() < 0.1
    assert (x.mean(0) - 3.0).abs().max() > 50


def test_training_keeps_unit_decoder_rows_and_learns(tmp_path, store_from):
    x, _ = planted(4096)
    store = ActivationStore(store_from(tmp_path / "acts", x.reshape(256, 1, 16, 8), shard_size=64))
    sae, metrics = train_sae(store, "mid_block.attentions.0", "cond", config=SAETrainConfig(
        d_sae=32, k=2, lr=3e-3, batch_size=128, epochs=3, dead_tokens=2000))
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(32))
    assert metrics["l0"] <= 2 and metrics["explained_variance"] > 0.8
    assert metrics["eval_tokens"] == 64 * 16 and metrics["train_tokens"] == 3 * 192 * 16  # one shard held out
    assert sae.metadata["hook_name"] == "mid_block.attentions.0" and sae.metadata["branch"] == "cond"


def test_projected_gradient_has_no_radial_part():
    torch.manual_seed(0)  # TopKSAE draws its decoder from the global RNG
    sae = TopKSAE(8, 16, k=3)
    x, _ = planted(64)
    (sae(x) - x).pow(2).sum().backward()
    g0 = sae.W_dec.grad.clone()
    sae.project_decoder_grad()
    eps32 = torch.finfo(torch.float32).eps
    residual = (sae.W_dec.grad * sae.W_dec).sum(1).abs()
    # a d_in-term dot product, a subtraction and ||w|| ~ 1 each round at eps * ||g|| * ||w||
    assert (residual <= 4 * sae.d_in * eps32 * g0.norm(dim=1) * sae.W_dec.norm(dim=1)).all()


def test_auxk_revives_dead_latents():
    """Latents 16..31 start with tiny encoder weights: they never reach the top k, so only AuxK can revive them."""
    x, dirs = planted(2048, d=8, atoms=32, per=2)
    fired = {}
    for coef in (0.0, 1 / 32):
        torch.manual_seed(0)
        sae = TopKSAE(8, 32, k=2)
        with torch.no_grad():
            sae.W_dec.copy_(dirs[torch.randperm(32)])
            sae.W_enc.copy_(sae.W_dec.T)
            sae.W_enc[:, 16:] *= 1e-3
        opt = torch.optim.Adam(sae.parameters(), lr=1e-2)
        since = torch.zeros(32, dtype=torch.long)
        cfg = SAETrainConfig(k=2, aux_k=16, aux_coef=coef, dead_tokens=256)
        for epoch in range(30):
            for batch in x.split(128):
                train_step(sae, opt, batch, since, cfg)
        with torch.no_grad():
            fired[coef] = int((sae.encode(x) > 0).any(0).sum())
    assert fired[0.0] == 16  # without AuxK the starved latents stay dead
    assert fired[1 / 32] >= 22  # most of them fire again


def test_save_load_round_trip_and_mismatch_errors(tmp_path):
    sae = TopKSAE(8, 16, k=3, metadata={"hook_name": "mid_block.attentions.0", "branch": "cond", "steps": [0]})
    sae.save(tmp_path / "sae")
    back = TopKSAE.load(tmp_path / "sae", hookpoint="mid_block.attentions.0", d_in=8, d_sae=16)
    assert all(torch.equal(a, b) for a, b in zip(sae.state_dict().values(), back.state_dict().values()))
    assert back.k == 3 and back.metadata == sae.metadata
    with pytest.raises(ValueError, match="for hookpoint 'mid_block.attentions.0', not 'up_blocks.1.attentions.0'"):
        TopKSAE.load(tmp_path / "sae", hookpoint="up_blocks.1.attentions.0")
    with pytest.raises(ValueError, match="d_sae=16 but 32"):
        TopKSAE.load(tmp_path / "sae", d_sae=32)
    with pytest.raises(FileExistsError):
        sae.save(tmp_path / "sae")
    with pytest.raises(FileNotFoundError, match="not an SAE folder"):
        TopKSAE.load(tmp_path)


def test_files_use_saelens_layout(tmp_path):
    TopKSAE(8, 16, k=3, metadata={"hook_name": "mid_block.attentions.0"}).save(tmp_path / "sae")
    weights = load_file(str(tmp_path / "sae" / "sae_weights.safetensors"))
    assert {k: tuple(v.shape) for k, v in weights.items()} == {"W_enc": (8, 16), "W_dec": (16, 8), "b_enc": (16,),
                                                              "b_dec": (8,)}
    import json

    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert cfg["architecture"] == "topk" and cfg["apply_b_dec_to_input"] and cfg["metadata"]["hook_name"]


def test_reads_an_sae_written_by_saelens():
    """tests/sae/data/saelens_topk was written by SAELens 6.54.12 (TopKSAE.save_model), with its encode/decode output."""
    sae = TopKSAE.load(DATA / "saelens_topk", hookpoint="mid_block.attentions.0")
    ref = load_file(str(DATA / "saelens_topk_reference.safetensors"))
    torch.testing.assert_close(sae.encode(ref["x"]), ref["z"])
    torch.testing.assert_close(sae.decode(ref["z"]), ref["x_hat"])


def test_interrupted_training_resumes_from_checkpoint(tmp_path, store_from):
    x, _ = planted(2048)
    store = ActivationStore(store_from(tmp_path / "acts", x.reshape(128, 1, 16, 8), shard_size=32))
    cfg = SAETrainConfig(d_sae=32, k=2, lr=3e-3, batch_size=64, checkpoint_every=4)
    full, _ = train_sae(store, "mid_block.attentions.0", config=cfg)

    def stop(info):
        if info["step"] == 9:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_sae(store, "mid_block.attentions.0", config=cfg, checkpoint=tmp_path / "ck", progress=stop)
    assert (tmp_path / "ck" / "state.json").is_file()
    resumed, metrics = train_sae(store, "mid_block.attentions.0", config=cfg, checkpoint=tmp_path / "ck")
    assert metrics["train_steps"] == 24 and not (tmp_path / "ck").exists()
    torch.testing.assert_close(resumed.W_dec, full.W_dec)
