"""The TopK sparse autoencoder: z = TopK(ReLU(W_enc (x - b_dec) + b_enc)), x_hat = W_dec z + b_dec, with unit-norm
decoder rows (the concept vectors). Saved in SAELens's layout: `cfg.json` + `sae_weights.safetensors`
(W_enc (d_in, d_sae), W_dec (d_sae, d_in), b_enc, b_dec); what cadiff needs to use it again (hookpoint, whether it
reads the residual update, branch, steps, model fingerprint) sits in cfg.json's `metadata`.

Example:
    >>> from cadiff.sae import TopKSAE
    >>> sae = TopKSAE(d_in=128, d_sae=512, k=10)
    >>> z = sae.encode(torch.randn(4, 128)); (z != 0).sum(-1)
    tensor([10, 10, 10, 10])
    >>> sae.save("runs/sae/mid"); TopKSAE.load("runs/sae/mid", hookpoint="mid_block.attentions.0")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cadiff.errors import BadInput, MissingFile
from cadiff.io.files import atomic_dir

CFG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"


class TopKSAE(nn.Module):
    """A TopK SAE over `d_in`-dim activations with `d_sae` latents, `k` active per vector."""

    def __init__(self, d_in: int, d_sae: int, k: int, metadata: dict[str, Any] | None = None):
        super().__init__()
        if not 0 < k <= d_sae:
            raise BadInput(f"k={k} must be between 1 and the dictionary size d_sae={d_sae}; lower k or widen the SAE")
        self.d_in, self.d_sae, self.k = d_in, d_sae, k
        self.metadata: dict[str, Any] = dict(metadata or {})
        w = torch.randn(d_sae, d_in)
        w = w / w.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w)
        self.W_enc = nn.Parameter(w.T.clone())
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    @property
    def hookpoint(self) -> str | None:
        return self.metadata.get("hook_name")

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """ReLU(W_enc (x - b_dec) + b_enc): the activations before the TopK selection."""
        return torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)

    def topk(self, pre: torch.Tensor) -> torch.Tensor:
        """Keep the k largest pre-activations of each vector, zero elsewhere."""
        values, indices = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, indices, values)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Sparse codes (..., d_sae): the k largest of `pre_acts`, zero elsewhere."""
        return self.topk(self.pre_acts(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """W_dec z + b_dec."""
        return z @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def concept(self, latent: int) -> torch.Tensor:
        """The concept vector of a latent: its (unit-norm) decoder row."""
        return self.W_dec[latent]

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale every decoder row to unit norm."""
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def project_decoder_grad(self) -> None:
        """Remove the gradient component parallel to each decoder row (it would only change the row's norm)."""
        if self.W_dec.grad is not None:
            parallel = (self.W_dec.grad * self.W_dec).sum(1, keepdim=True)
            self.W_dec.grad.sub_(parallel * self.W_dec)

    # files
    def config(self) -> dict[str, Any]:
        """cfg.json in SAELens's TopK layout, cadiff's fields inside `metadata`."""
        return {"architecture": "topk", "d_in": self.d_in, "d_sae": self.d_sae, "k": self.k, "dtype": "float32",
                "device": "cpu", "apply_b_dec_to_input": True, "normalize_activations": "none",
                "reshape_activations": "none", "rescale_acts_by_decoder_norm": False, "metadata": self.metadata}

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write `cfg.json` + `sae_weights.safetensors` into a new folder `path`."""
        with atomic_dir(path, overwrite=overwrite) as tmp:
            save_file({k: v.detach().float().contiguous().cpu() for k, v in self.state_dict().items()},
                      str(tmp / WEIGHTS))
            (tmp / CFG).write_text(json.dumps(self.config(), indent=2, default=str) + "\n")
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, hookpoint: str | None = None, d_in: int | None = None,
             d_sae: int | None = None) -> "TopKSAE":
        """Load an SAE folder (cadiff's or SAELens's TopK); ValueError if it is for another hookpoint or size."""
        path = Path(path)
        if not (path / CFG).is_file() or not (path / WEIGHTS).is_file():
            raise MissingFile(f"{path} is not an SAE folder (needs {CFG} and {WEIGHTS}); "
                              "train one with `cadiff sae train`")
        cfg = json.loads((path / CFG).read_text())
        if cfg.get("architecture", "topk") != "topk":
            raise BadInput(f"{path} holds a '{cfg['architecture']}' SAE; cadiff uses TopK SAEs only")
        meta = dict(cfg.get("metadata") or {})
        if "hook_name" not in meta and "hook_name" in cfg:  # older SAELens layout: hook_name at the top level
            meta["hook_name"] = cfg["hook_name"]
        if hookpoint is not None and meta.get("hook_name") not in (None, hookpoint):
            raise BadInput(f"{path} is an SAE for hookpoint '{meta['hook_name']}', not '{hookpoint}'; "
                           "use the SAE trained on that hookpoint")
        for name, want in (("d_in", d_in), ("d_sae", d_sae)):
            if want is not None and cfg[name] != want:
                raise BadInput(f"{path} has {name}={cfg[name]} but {want} is needed here; "
                               "use an SAE trained on these activations")
        sae = cls(int(cfg["d_in"]), int(cfg["d_sae"]), int(cfg["k"]), meta)
        try:
            state = load_file(str(path / WEIGHTS))
        except Exception as exc:
            raise BadInput(f"{path / WEIGHTS} is not readable ({exc}); the file may be truncated") from exc
        expected = {k: tuple(v.shape) for k, v in sae.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in state.items() if k in expected}
        if got != expected:
            raise BadInput(f"{path / WEIGHTS} does not match its cfg.json: weights {got}, expected {expected}")
        state = {k: state[k].float() for k in expected}
        if cfg.get("rescale_acts_by_decoder_norm"):  # SAELens option: fold the decoder norms into the encoder
            norm = state["W_dec"].norm(dim=1)
            state["W_enc"], state["b_enc"] = state["W_enc"] * norm, state["b_enc"] * norm
            state["W_dec"] = state["W_dec"] / norm[:, None]
        sae.load_state_dict(state)
        return sae
