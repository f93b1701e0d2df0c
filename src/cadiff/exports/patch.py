"""Weight-difference patch files, the LyCORIS "full" convention that ComfyUI's LoRA loaders, A1111's built-in Lora
extension, Forge and LyCORIS itself apply: one `.safetensors` holding, for each module the edit changed,
`<key>.diff` (edited minus original weight, at the weight's shape) and `<key>.diff_b` (the bias's), nothing for
the modules it left alone. A tool adds `strength * diff` to the weight, so a patch applies the edit, part of it or
none. The formats differ in their keys:

- `comfyui`: the family's original module names (`layouts`): `lora_unet_<LDM name, dots as _>` for U-Nets (the
  names ComfyUI, A1111 and Forge all read), `diffusion_model.<original name>` for the transformer families that
  have a layout (SD3, Flux.1, Flux.2, Chroma, Z-Image, Lumina 2, Qwen-Image, HiDream), a fused weight's difference
  whole (zeros where the edit left it alone); PixArt, which has none, in diffusers' names under `transformer.`,
  which ComfyUI maps onto its fused weights itself (a bias of a fused weight it drops);
- `a1111`: U-Nets only, the same file (A1111 has no `.diff` path for SD3 and no Flux; Forge reads `comfyui` files);
- `lycoris`: `lycoris_<diffusers module name, dots as _>` for every family: what LyCORIS's loader applies to the
  diffusers model, and ComfyUI reads for SD 1.x / SDXL, SD3, Flux.1, Qwen-Image, Z-Image and HiDream.

A module whose bias changed and weight did not gets a zero `.diff` beside its `.diff_b` (A1111 refuses a lone
`.diff_b`). Differences are kept in the weights' dtype where that is exact (a zeroed weight's is), else fp32.

Example:
    $ cadiff export runs/no-circle --format comfyui --out no-circle.safetensors
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from cadiff.errors import BadInput
from cadiff.exports import Edit, ExportFormat, register_format
from cadiff.exports.layouts import LAYOUTS, free_zeros, is_free_zeros
from cadiff.models.loading import denoiser


PATCHABLE = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)  # what LyCORIS's full module wraps


def differences_by_name(edit: Edit, rename) -> dict[str, torch.Tensor]:
    """The edit's differences keyed by `rename(denoiser, state)` (a state dict keyed like the denoiser's in, another
    naming out): every weight is renamed, the unchanged ones as zeros that take no memory, and a renamed tensor that
    holds no change is left out (a fused weight with one changed part is kept whole)."""
    net = denoiser(edit.base)
    state = {n: edit.difference[n] if n in edit.difference else free_zeros(t)
             for n, t in net.state_dict().items()}
    return {k: v.contiguous() for k, v in rename(net, state).items() if not is_free_zeros(v) and bool(v.any())}


def patch_tensors(differences: dict[str, torch.Tensor], key) -> dict[str, torch.Tensor]:
    """`<key(module)>.diff` / `.diff_b` tensors from differences by parameter name (`module.weight`, `module.bias`;
    any other parameter by its whole name as `.diff`)."""
    out = {}
    for name, d in differences.items():
        module, _, kind = name.rpartition(".")
        if kind == "weight":
            out[f"{key(module)}.diff"] = d
        elif kind == "bias":
            out[f"{key(module)}.diff_b"] = d
        else:
            out[f"{key(name)}.diff"] = d
    return out


class PatchFile(ExportFormat):
    """A patch file: its keys from `rename` (diffusers names in, the naming the tool reads out) and `key`."""

    def rename(self, edit: Edit):
        raise NotImplementedError

    def key(self, edit: Edit, module: str) -> str:
        raise NotImplementedError

    def write(self, edit: Edit, path: Path) -> None:
        differences = differences_by_name(edit, self.rename(edit))
        tensors = patch_tensors(differences, lambda module: self.key(edit, module))
        lone = [k.removesuffix("_b") for k in tensors if k.endswith(".diff_b") and k.removesuffix("_b") not in tensors]
        if lone:  # A1111 reads a module's .diff_b only beside its .diff
            net = denoiser(edit.base)
            weights = self.rename(edit)(net, {n: free_zeros(t) for n, t in net.state_dict().items()})
            by_key = {self.key(edit, n.removesuffix(".weight")): w for n, w in weights.items() if n.endswith(".weight")}
            tensors.update({k: torch.zeros(by_key[k.removesuffix(".diff")].shape) for k in lone})
        save_file(tensors, str(path), metadata=edit.metadata(self.name))


class OriginalNames(PatchFile):
    """Keys in the family's original module names (U-Nets: `lora_unet_` + the LDM name with dots as `_`)."""

    def families(self) -> tuple[str, ...]:
        return tuple(LAYOUTS)

    def rename(self, edit: Edit):
        return LAYOUTS[edit.family].rename

    def key(self, edit: Edit, module: str) -> str:
        return "lora_unet_" + module.replace(".", "_") if edit.family == "unet" else f"diffusion_model.{module}"


# Families without an original layout whose diffusers names ComfyUI maps onto its own weights itself (a fused
# weight's slice by its offset): `transformer.<diffusers module>`
COMFYUI_DIFFUSERS_NAMES = ("pixart",)


@register_format
class ComfyUI(OriginalNames):
    name = "comfyui"
    summary = ("a weight-difference patch in the original module names (ComfyUI's LoRA loaders, Forge; A1111 too "
               "for U-Nets): the families with an original layout, and PixArt in diffusers' names")

    def families(self) -> tuple[str, ...]:
        return (*LAYOUTS, *COMFYUI_DIFFUSERS_NAMES)

    def rename(self, edit: Edit):
        return super().rename(edit) if edit.family in LAYOUTS else (lambda net, state: state)

    def key(self, edit: Edit, module: str) -> str:
        return super().key(edit, module) if edit.family in LAYOUTS else f"transformer.{module}"


@register_format
class A1111(OriginalNames):
    name = "a1111"
    summary = "a weight-difference patch for A1111's Lora extension and Forge (U-Nets: SD 1.x, SD 2.x, SDXL)"

    def families(self) -> tuple[str, ...]:
        return ("unet",)


@register_format
class LyCORIS(PatchFile):
    name = "lycoris"
    summary = ("a weight-difference patch in diffusers module names (LyCORIS's loader, every family; ComfyUI for "
               "U-Nets, SD3, Flux.1, Qwen-Image, Z-Image, HiDream)")

    def check_difference(self, edit: Edit) -> None:
        """LyCORIS patches the weights and biases of Linear and convolution modules only."""
        net = denoiser(edit.base)
        for name in edit.difference:
            module, _, kind = name.rpartition(".")
            if kind not in ("weight", "bias") or not isinstance(net.get_submodule(module), PATCHABLE):
                raise BadInput(f"the edit changes {name}, a parameter of no Linear or convolution module, which "
                               "LyCORIS cannot patch; export --format comfyui (where the family has it) or "
                               "diffusers")

    def rename(self, edit: Edit):
        return lambda net, state: state

    def key(self, edit: Edit, module: str) -> str:
        return "lycoris_" + module.replace(".", "_")
