"""The edit as a peft adapter on the denoiser: peft's SHiRA (sparse high-rank adapter) stores, per Linear module, the
changed entries' values and indices, which is what a zeroing edit is (the zeroed weights, minus themselves). Loaded
with peft's API, `enable_adapters` / `disable_adapters` switch the edit on and off and `set_adapters(name, 0.5)`
applies half of it; with the adapter on, the weights are the edited ones bit for bit.

A SHiRA adapter gives every module the same number of slots, r * (rows + columns): r is the smallest that holds
the module with the most changes, and the unused slots repeat a changed entry with the value -0.0 (adding -0.0
changes no weight, not even a zero's sign). An edit of anything but Linear weights (a convolution, a bias, a norm),
or one denser than a SHiRA adapter can hold (r * (rows + columns) > rows * columns), is refused: export it as a
patch or a folder instead.

The folder is what `PeftModel.save_pretrained` writes (adapter_config.json, adapter_model.safetensors, keys under
`base_model.model.`), plus cadiff_edit.json with the edit's provenance.

Example:
    $ cadiff export runs/no-circle --format peft --out no-circle-peft
    >>> attach(pipe, "no-circle-peft", name="erase")    # doctest: +SKIP
    >>> pipe.unet.disable_adapters(); pipe.unet.enable_adapters(); pipe.unet.set_adapters("erase", 0.5)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file

from cadiff.errors import BadInput
from cadiff.exports import Edit, ExportFormat, register_format
from cadiff.models.loading import denoiser, model_fingerprint

PREFIX = "base_model.model."  # where PeftModel.save_pretrained puts a model's keys
INFO = "cadiff_edit.json"


def _require_peft():
    try:
        import peft
    except ImportError:
        raise BadInput("the peft format needs peft: pip install 'cadiff[export]'") from None
    return peft


def _linear_differences(edit: Edit) -> dict[str, torch.Tensor]:
    """The edit's differences by Linear module name; BadInput for a change anywhere else."""
    net = denoiser(edit.base)
    out = {}
    for name, d in edit.difference.items():
        module, _, kind = name.rpartition(".")
        if kind != "weight" or not isinstance(net.get_submodule(module), torch.nn.Linear):
            raise BadInput(f"the edit changes {name}, which a peft SHiRA adapter cannot hold (it holds Linear "
                           "weights); export --format comfyui, lycoris or diffusers instead")
        out[module] = d
    return out


def shira_rank(shapes: dict[str, tuple[int, int]], counts: dict[str, int]) -> int:
    """The smallest r with r * (rows + columns) >= the changed entries of every module; BadInput naming a module
    that r * (rows + columns) slots cannot fit in (rows * columns weights)."""
    r = max(1, max(math.ceil(counts[m] / sum(shapes[m])) for m in counts))
    for m, (rows, cols) in shapes.items():
        if r * (rows + cols) > rows * cols:
            raise BadInput(f"the edit needs a SHiRA adapter of rank {r}, whose {r * (rows + cols)} slots per module "
                           f"exceed {m}'s {rows * cols} weights; the edit is too dense for a sparse adapter: export "
                           "--format comfyui, lycoris or diffusers instead")
    return r


@register_format
class PeftAdapter(ExportFormat):
    name = "peft"
    summary = ("a sparse peft adapter (SHiRA) on the denoiser: switch the edit on and off, or apply part of it "
               "(every family; Linear weights)")
    file = False

    def check_difference(self, edit: Edit) -> None:
        _require_peft()
        differences = _linear_differences(edit)
        shira_rank({m: tuple(d.shape) for m, d in differences.items()},
                   {m: int(d.count_nonzero()) for m, d in differences.items()})

    def write(self, edit: Edit, path: Path) -> None:
        peft = _require_peft()
        differences = _linear_differences(edit)
        r = shira_rank({m: tuple(d.shape) for m, d in differences.items()},
                       {m: int(d.count_nonzero()) for m, d in differences.items()})
        net = denoiser(edit.base)
        tensors = {}
        for module, d in differences.items():
            dtype = net.get_submodule(module).weight.dtype
            where = d.nonzero().T  # (2, K): rows, columns
            values = d[where[0], where[1]].to(dtype)
            pad = r * sum(d.shape) - where.shape[1]
            tensors[f"{PREFIX}{module}.shira_indices"] = torch.cat([where, where[:, :1].repeat(1, pad)], 1).to(
                torch.int32).contiguous()
            tensors[f"{PREFIX}{module}.shira_weight"] = torch.cat([values, torch.full((pad,), -0.0, dtype=dtype)])
        # a mask_type other than "random": an adapter loaded without its indices fails instead of drawing random ones
        config = peft.ShiraConfig(r=r, mask_type="cadiff", target_modules=sorted(differences), inference_mode=True)
        config.save_pretrained(str(path))
        save_file(tensors, str(path / "adapter_model.safetensors"), metadata=edit.metadata(self.name))
        (path / INFO).write_text(json.dumps(edit.provenance(self.name), indent=2, default=str) + "\n")


def attach(pipe, folder: str | Path, name: str = "edit") -> None:
    """Load an adapter `cadiff export --format peft` wrote onto `pipe`'s denoiser with peft's API, as adapter
    `name`: then `disable_adapters()`, `enable_adapters()` and `set_adapters(name, scale)` on the denoiser switch it
    (diffusers' methods; on PixArt, whose denoiser lacks them, the peft layers' own `enable_adapters(on)` and
    `set_scale(name, scale)`). BadInput when `pipe` is not the model the edit was made from (its fingerprint)."""
    peft = _require_peft()
    folder = Path(folder)
    net = denoiser(pipe)
    info = json.loads((folder / INFO).read_text()) if (folder / INFO).is_file() else {}
    if info.get("base_fingerprint") not in (None, model_fingerprint(pipe)):
        raise BadInput(f"{folder} was made from model {info['base_fingerprint']}, but this model is "
                       f"{model_fingerprint(pipe)}; attach it to the model the edit was made from")
    config = peft.ShiraConfig.from_pretrained(str(folder))
    if hasattr(net, "add_adapter"):  # diffusers' peft mixin: enable_adapters / disable_adapters / set_adapters
        net.add_adapter(config, adapter_name=name)
    else:  # (PixArt's denoiser has no such methods: peft's own layers switch it)
        peft.inject_adapter_in_model(config, net, adapter_name=name)
    # peft's SHiRA loader matches keys without PeftModel's prefix when the adapter is injected into the model itself
    weights = {k.removeprefix(PREFIX): v for k, v in peft.utils.load_peft_weights(str(folder)).items()}
    result = peft.set_peft_model_state_dict(net, weights, adapter_name=name)
    if result.unexpected_keys:
        raise RuntimeError(f"peft did not place {len(result.unexpected_keys)} adapter weights, e.g. "
                           f"{result.unexpected_keys[0]}")
