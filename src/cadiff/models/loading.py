"""Loading text-to-image pipelines from local weights only: the embedded model, a folder, a file, or the HF cache.

Example:
    >>> import cadiff
    >>> pipe = cadiff.load_pipeline()          # the embedded shapes model
    >>> images = cadiff.generate(pipe, ["a red striped circle"], seeds=[0])   # (1, 32, 32, 3) uint8
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import numbers
import re
import weakref
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path

import torch

from cadiff.errors import BadInput


# A model's recommended sampling settings and world live in its scheduler's config under this key: diffusers keeps
# such a key through save_pretrained, from_pretrained and a scheduler swap (from_config), so the settings travel with
# any copy of the model. Older folders keep them in a cadiff.json beside model_index.json, which is still read.
INFO_KEY = "_cadiff"
CADIFF_INFO = "cadiff.json"
SD_DEFAULTS = {"num_inference_steps": 50, "guidance_scale": 7.5}
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Key prefixes of the VAE and text encoders in single-file checkpoints: a file with none holds the denoiser alone
NOT_DENOISER = ("first_stage_model.", "vae.", "cond_stage_model.", "conditioner.", "text_encoders.")


class ModelLoadError(BadInput):
    """The model could not be loaded from local files; the message says what is missing and how to provide it."""


# The embedded shapes models, by the name `--model embedded:<name>` takes, and their folders among the shipped assets
EMBEDDED = {"unet": "pipeline", "dit": "dit"}
EMBEDDED_DEFAULT = "unet"


def embedded_model_path(name: str = EMBEDDED_DEFAULT) -> Path:
    """The folder of an embedded shapes model ('unet', the default, or 'dit'), shipped inside the package (found by
    path: the shapes world, which trains and judges it, sits above this layer)."""
    if name not in EMBEDDED:
        raise ModelLoadError(f"no embedded model '{name}': use one of "
                             f"{', '.join('embedded:' + n for n in EMBEDDED)} (or omit --model for embedded:unet)")
    return Path(str(resources.files("cadiff") / "worlds" / "shapes" / "assets" / EMBEDDED[name]))


def embedded_name(model: str | Path | None) -> str | None:
    """The embedded model `model` names (None: the default one; 'embedded:dit': 'dit'), else None."""
    if model is None:
        return EMBEDDED_DEFAULT
    text = str(model)
    if text == "embedded" or text == "embedded:shapes":
        return EMBEDDED_DEFAULT
    return text.split(":", 1)[1] if text.startswith("embedded:") else None


def _dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    table = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
             "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
    if dtype not in table:
        raise BadInput(f"unknown dtype '{dtype}'; use one of {', '.join(table)}")
    return table[dtype]


def _absent_components(index: Path) -> dict:
    """Components a pipeline folder was saved without (SD3 without T5), and no safety checker: passed as None."""
    entries = json.loads(index.read_text())
    extra = {name: None for name, value in entries.items() if value == [None, None]}
    if "safety_checker" in entries:
        extra.update(safety_checker=None, requires_safety_checker=False)
    return extra


def _from_folder(path: Path, dtype: torch.dtype | None, **components):
    from diffusers import DiffusionPipeline

    index = path / "model_index.json"
    if not index.is_file():
        raise ModelLoadError(f"{path} is not a diffusers pipeline folder (no model_index.json); "
                             "point --model at a folder written by save_pretrained, or at a .safetensors file")
    extra = _absent_components(index)
    kwargs = {"torch_dtype": dtype} if dtype is not None else {}
    try:
        pipe = DiffusionPipeline.from_pretrained(str(path), local_files_only=True, **extra, **components, **kwargs)
    except Exception as exc:  # diffusers raises many types for broken folders
        raise ModelLoadError(f"could not load the pipeline in {path}: {exc}") from exc
    legacy = path / CADIFF_INFO
    if legacy.is_file() and not model_info(pipe):  # an older folder: carry its settings in the scheduler from now on
        mark_model(pipe, json.loads(legacy.read_text()))
    return pipe


class _LazyCheckpoint(Mapping):
    """The tensors of a safetensors file by name, read only when asked for (diffusers reads a few to tell the kind
    of checkpoint)."""

    def __init__(self, handle):
        self._handle, self._keys = handle, list(handle.keys())

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._keys:
            raise KeyError(key)
        return self._handle.get_tensor(key)

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def _cached_folder(model_id: str) -> Path | None:
    """The local snapshot of a hub repository in the Hugging Face cache, or None; never asks the network."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model_id, local_files_only=True))
    except Exception:
        return None


def _single_file_config(path: Path, handle, config: str | None, denoiser_only: bool = False) -> Path:
    """The local diffusers config folder for the single-file checkpoint `path`: `config` (a folder or a cached hub
    id) or, without one, the cached copy of the config diffusers would fetch for this kind of checkpoint (for a file
    holding only the denoiser, the whole pipeline: its VAE and text encoders come from there)."""
    from diffusers.loaders.single_file_utils import fetch_diffusers_config, infer_diffusers_model_type

    if config is not None:
        folder = Path(config).expanduser()
        folder = folder if folder.is_dir() else (_cached_folder(config) if HUB_ID.match(config) else None)
        if folder is None:
            raise ModelLoadError(f"config '{config}' is neither a local folder nor a hub id in the local Hugging Face "
                                 "cache; cadiff never downloads: pass --config <pipeline folder>")
        return folder
    checkpoint = _LazyCheckpoint(handle)
    try:
        kind = infer_diffusers_model_type(checkpoint)
        repo = fetch_diffusers_config(checkpoint)["pretrained_model_name_or_path"]
    except Exception:
        raise ModelLoadError(f"{path} is a checkpoint of a kind diffusers does not recognise, and a single-file "
                             "checkpoint needs its diffusers config locally: pass config=<pipeline folder or cached "
                             "hub id> (CLI: --config)") from None
    folder = _cached_folder(repo)
    if folder is None:
        fetch = (f"hf download {repo} --exclude 'transformer/*' 'unet/*'" if denoiser_only else
                 f"hf download {repo} --exclude '*.safetensors' '*.bin' '*.ckpt'")
        raise ModelLoadError(f"{path} is a single-file '{kind}' checkpoint, which needs its diffusers config locally: "
                             "pass config=<pipeline folder or cached hub id> (CLI: --config), or put the configs of "
                             f"'{repo}' in the local Hugging Face cache (cadiff never downloads; where there is "
                             f"network: {fetch})")
    return folder


def _pipeline_class(config: Path):
    """The diffusers pipeline class a config folder names (StableDiffusionXLPipeline for SDXL, ...)."""
    import diffusers

    index = config / "model_index.json"
    name = json.loads(index.read_text()).get("_class_name") if index.is_file() else None
    cls = getattr(diffusers, str(name), None)
    if cls is None or not hasattr(cls, "from_single_file"):
        raise ModelLoadError(f"config folder {config} names no diffusers pipeline that loads single files "
                             f"(model_index.json: _class_name {name!r}); pass --config <pipeline folder>")
    return cls


def _denoiser_from_file(path: Path, folder: Path, dtype: torch.dtype | None):
    """The pipeline of a file that holds only its denoiser (Flux files as published: the transformer alone): the
    denoiser from the file, the rest from the config folder. (diffusers' pipeline `from_single_file` would look for
    the VAE and text encoders in the file, and in the folder only under diffusers' weight names, which transformers'
    text encoders do not use.)"""
    import diffusers

    index = folder / "model_index.json"
    if not index.is_file():
        raise ModelLoadError(f"{path} holds only a denoiser; its VAE and text encoders come from a pipeline folder, "
                             f"and {folder} has no model_index.json: pass --config <pipeline folder>")
    entries = json.loads(index.read_text())
    name = next((n for n in ("transformer", "unet") if isinstance(entries.get(n), list)), None)
    from diffusers.loaders.single_file_model import SINGLE_FILE_LOADABLE_CLASSES

    cls = getattr(diffusers, str(entries[name][1]), None) if name else None
    if cls is None:
        raise ModelLoadError(f"{path} holds only a denoiser, and the config folder {folder} names none diffusers "
                             "knows; pass --config <pipeline folder>")
    if cls.__name__ not in SINGLE_FILE_LOADABLE_CLASSES:
        raise ModelLoadError(f"diffusers cannot load a {cls.__name__} from a single file ({path}); load the model "
                             "from its diffusers folder instead")
    kwargs = {"torch_dtype": dtype} if dtype is not None else {}
    try:
        module = cls.from_single_file(str(path), config=str(folder), subfolder=name, local_files_only=True, **kwargs)
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelLoadError(f"could not build a {cls.__name__} from {path} with the config in {folder}/{name}: "
                             f"{reason}; check that --config belongs to this checkpoint") from exc
    return _from_folder(folder, dtype, **{name: module})


def _from_file(path: Path, dtype: torch.dtype | None, config: str | None):
    from safetensors import safe_open

    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelLoadError(f"{path} is a pickle checkpoint, which cadiff never loads (it can run code); "
                             "convert it to .safetensors first")
    if path.suffix.lower() != ".safetensors":
        raise ModelLoadError(f"{path}: single-file checkpoints must be .safetensors")
    try:
        with safe_open(str(path), framework="pt") as handle:
            denoiser_only = not any(key.startswith(NOT_DENOISER) for key in handle.keys())
            folder = _single_file_config(path, handle, config, denoiser_only)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"{path} is not a readable safetensors file ({exc}); the file may be truncated") from exc
    if denoiser_only:
        return _denoiser_from_file(path, folder, dtype)
    cls = _pipeline_class(folder)
    kwargs = {"torch_dtype": dtype} if dtype is not None else {}
    kwargs.update(_absent_components(folder / "model_index.json"))
    try:
        return cls.from_single_file(str(path), config=str(folder), local_files_only=True, **kwargs)
    except Exception as exc:
        raise ModelLoadError(f"could not build a {cls.__name__} from {path} with the config in {folder}: {exc}; "
                             "check that --config belongs to this checkpoint") from exc


def _from_cache(model_id: str, dtype: torch.dtype | None):
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(model_id, local_files_only=True)
    except Exception as exc:
        raise ModelLoadError(
            f"'{model_id}' is neither a local path nor in the local Hugging Face cache; cadiff never downloads. "
            f"Fetch it where there is network (`hf download {model_id}`) or pass a local folder or .safetensors file"
        ) from exc
    return _from_folder(Path(folder), dtype)


def load_pipeline(model: str | Path | None = None, dtype: str | torch.dtype | None = None, device: str = "cpu",
                  config: str | None = None):
    """Load a diffusers pipeline from local files: None (the embedded shapes U-Net), 'embedded:dit' (its MMDiT
    sibling), a folder, a .safetensors file, or a hub id already in the local cache. Never downloads."""
    torch_dtype = _dtype(dtype)
    name = embedded_name(model)
    if name is not None:
        folder = embedded_model_path(name)
        if not (folder / "model_index.json").is_file():
            raise ModelLoadError(f"embedded:{name} is not in this install ({folder}); build it with `cadiff shapes "
                                 f"train --denoiser {name} --out DIR` and pass --model DIR/pipeline")
        pipe = _from_folder(folder, torch_dtype)
    else:
        path = Path(model).expanduser()
        if path.is_dir():
            pipe = _from_folder(path, torch_dtype)
        elif path.is_file():
            pipe = _from_file(path, torch_dtype, config)
        elif HUB_ID.match(str(model)) and not str(model).startswith((".", "/")):
            pipe = _from_cache(str(model), torch_dtype)
        else:
            raise ModelLoadError(f"model '{model}' not found: give an existing folder, a .safetensors file, "
                                 "a hub id in the local cache, or embedded:dit (omit --model for the embedded shapes model)")
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def source_name(model: str | Path | None) -> str:
    """How a result names the model it was loaded from: 'embedded:unet' / 'embedded:dit', else the path or id."""
    name = embedded_name(model)
    return f"embedded:{name}" if name else str(model)


def model_info(pipe) -> dict:
    """The model's recorded sampling settings and world (empty when it records none)."""
    scheduler = getattr(pipe, "scheduler", None)
    return dict(scheduler.config.get(INFO_KEY) or {}) if scheduler is not None else {}


def mark_model(pipe, info: dict) -> None:
    """Record `info` (e.g. num_inference_steps, guidance_scale, world) with the model, in its scheduler's config,
    where the stock `save_pretrained` keeps it."""
    pipe.scheduler.register_to_config(**{INFO_KEY: {**model_info(pipe), **info}})


def sampling_defaults(pipe) -> dict:
    """Recommended `num_inference_steps` and `guidance_scale`: the model's recorded ones, else SD's 50 / 7.5."""
    info = model_info(pipe)
    return {k: info.get(k, v) for k, v in SD_DEFAULTS.items()}


def resolve_sampling(pipe, steps: int | None = None, guidance: float | None = None) -> tuple[int, float]:
    """The sampling steps and guidance to use: those given, else the model's recommended ones (`sampling_defaults`).
    ValueError for steps that are not a positive integer or a guidance that is not a finite number >= 0."""
    defaults = sampling_defaults(pipe)
    steps = _checked(steps, "steps", defaults["num_inference_steps"], "num_inference_steps", "a positive integer",
                     lambda v: float(v).is_integer() and v > 0)
    guidance = _checked(guidance, "guidance", defaults["guidance_scale"], "guidance_scale", "a finite number >= 0",
                        lambda v: math.isfinite(v) and v >= 0)
    return int(steps), guidance


def _checked(value, name: str, default, key: str, rule: str, ok):
    """`value`, else the model's recorded `default` (its `key`); ValueError unless it is a number for which `ok`
    holds."""
    given = value is not None
    value = value if given else default
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and ok(value)):
        what = name if given else f"the model's recorded {key}"
        hint = "" if given else f"; give {name}= yourself (CLI: --{name})"
        raise BadInput(f"{what} must be {rule}, got {value}{hint}")
    return value


def sampling_source(pipe) -> str:
    """Where `sampling_defaults(pipe)` come from, in words for a user."""
    if all(k in model_info(pipe) for k in SD_DEFAULTS):
        return "the model's recorded settings"
    return "Stable Diffusion's defaults, since the model records none; set them with --steps / --guidance"


def denoiser(pipe) -> torch.nn.Module:
    """The pipeline's denoiser (UNet or transformer)."""
    for name in ("unet", "transformer"):
        module = getattr(pipe, name, None)
        if module is not None:
            return module
    raise ModelLoadError(f"{type(pipe).__name__} has no unet or transformer denoiser")


def _accelerator_of(module: torch.nn.Module) -> torch.device | None:
    """The accelerator (GPU) `module`'s weights are on, or None (host memory, or no weights)."""
    first = next(module.parameters(), None)
    return first.device if first is not None and first.device.type not in ("cpu", "meta") else None


@contextlib.contextmanager
def denoiser_alone(pipe) -> Iterator[None]:
    """Inside: every other component of `pipe` that sits on an accelerator (text encoders, VAE) waits in host
    memory, so a backward pass through the denoiser has the device to itself (a 24 B text encoder beside a 32 B
    denoiser); they come back after. Nothing moves on the CPU."""
    net = denoiser(pipe)
    moved = {}
    for name, module in pipe.components.items():
        if isinstance(module, torch.nn.Module) and module is not net and (device := _accelerator_of(module)):
            moved[name] = device
            module.to("cpu")
    try:
        yield
    finally:
        for name, device in moved.items():
            getattr(pipe, name).to(device)


def nonfinite_count(tensor: torch.Tensor) -> str | None:
    """'3 NaN values', '1 infinite value', '2 NaN and 1 infinite values' for a tensor holding such values, else None."""
    if not tensor.is_floating_point() or bool(torch.isfinite(tensor).all()):
        return None
    nan, inf = int(torch.isnan(tensor).sum()), int(torch.isinf(tensor).sum())
    parts = [f"{nan} NaN" if nan else "", f"{inf} infinite" if inf else ""]
    return f"{' and '.join(p for p in parts if p)} value{'s' if nan + inf > 1 else ''}"


def check_finite(tensors: Mapping[str, torch.Tensor], what: str, fix: str) -> None:
    """ValueError naming the first of `tensors` that holds NaN or infinite values (and how many others do):
    '<what> <name> has 3 NaN values (and 2 more: <names>): <fix>'."""
    bad = {name: count for name, tensor in tensors.items() if (count := nonfinite_count(tensor))}
    if bad:
        name, *rest = bad
        more = f" (and {len(rest)} more: {', '.join(rest[:3])}{', ...' if len(rest) > 3 else ''})" if rest else ""
        raise BadInput(f"{what} {name} has {bad[name]}{more}: {fix}")


DAMAGED_MODEL = ("the model file is damaged (every result computed from it would be NaN); use an intact copy of the "
                 "model (re-download or re-export it)")


def check_weights(module_or_pipe, whole_pipeline: bool = False) -> None:
    """ValueError naming the denoiser's NaN or infinite weights (with `whole_pipeline`, those of every component:
    text encoders, VAE, ...); `model_fingerprint` checks the denoiser's."""
    if isinstance(module_or_pipe, torch.nn.Module):
        modules = {"denoiser": module_or_pipe}
    else:
        modules = {"denoiser": denoiser(module_or_pipe)}
        if whole_pipeline:
            modules.update((name, m) for name, m in module_or_pipe.components.items()
                           if isinstance(m, torch.nn.Module) and m is not modules["denoiser"])
    for what, module in modules.items():
        check_finite(module.state_dict(), f"the {what}'s weight", DAMAGED_MODEL)


# The last fingerprint of each module, with the version of its weights it was computed on
_FINGERPRINTS: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple, str]]" = weakref.WeakKeyDictionary()


def _weights_version(state: dict[str, torch.Tensor]) -> tuple:
    """What changes whenever a weight does: each tensor's storage, shape, dtype and in-place version counter (moved
    by every in-place operation: cadiff's edits, optimizer steps, load_state_dict; not by writes through `.data`)."""
    return tuple((name, t.data_ptr(), t._version, tuple(t.shape), t.dtype) for name, t in sorted(state.items()))


def model_fingerprint(module_or_pipe) -> str:
    """A short sha256 of the denoiser's parameter names, shapes and values: equal weights, equal fingerprint.
    Computed once per version of the weights (a calibrated search asks dozens of times). ValueError naming them for
    NaN or infinite weights (`check_weights`), so nothing is computed from a damaged model."""
    module = module_or_pipe if isinstance(module_or_pipe, torch.nn.Module) else denoiser(module_or_pipe)
    state = module.state_dict()
    version = _weights_version(state)
    cached = _FINGERPRINTS.get(module)
    if cached is not None and cached[0] == version:
        return cached[1]
    check_weights(module)
    h = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    _FINGERPRINTS[module] = (version, h.hexdigest()[:16])
    return _FINGERPRINTS[module][1]


def keep_fingerprint(module: torch.nn.Module, fingerprint: str) -> None:
    """Record `fingerprint` as that of `module`'s current weights: for a change of storage that keeps every value
    (sharding the weights across processes), after which they could not be hashed whole."""
    _FINGERPRINTS[module] = (_weights_version(module.state_dict()), fingerprint)


def describe_model(pipe, model: str | Path | None) -> dict:
    """What a result file records about the model it was made with."""
    return {
        "source": source_name(model),
        "pipeline": type(pipe).__name__,
        "fingerprint": model_fingerprint(pipe),
        "dtype": str(denoiser(pipe).dtype).replace("torch.", ""),
    }
