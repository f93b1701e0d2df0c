"""What attribution holds in memory on the full-size denoisers: each family's denoiser built on the meta device (no
memory, no weights) from its diffusers class's own defaults, which are the published flagship configurations for
most families (the table says which model each default is), and for each: its parameters, its weights' bytes in
bf16, the fp32 accumulators `attribute` keeps for the `ff`, `attn` and `linear` groups (one fp32 copy of the
weights scored), the activations of one row, and how many 80 GB GPUs that takes.

Activations: the bytes autograd keeps for the backward pass of one conditional forward at batch 1, at the family's
native resolution, with a realistic text length (the pipeline's `max_sequence_length`), in bf16, with the group's
weights requiring grad and no other parameter. They are counted on the meta device as well, by a
`saved_tensors_hooks` pack hook: every storage once (a tensor saved by two nodes, or a view of it, is one
allocation), if it is still held when the forward returns, and neither the weights nor the buffers (views of them
included: they are in memory anyway). Two things stand in for what meta tensors do not do as the GPU does:
- attention: meta tensors take `scaled_dot_product_attention`'s math path, which keeps the fp32 attention matrix;
  the GPU's fused kernels (flash, memory-efficient, cuDNN) keep the queries, keys, values, the output (laid out as
  they allocate it) and the log-sum-exp, and the mask as an additive bias if there is one. `_FusedAttention` keeps
  the same;
- dtypes: meta tensors multiply bf16 weights with fp32 inputs where the GPU refuses to; `_same_dtypes` refuses too,
  so each input below has the dtype its pipeline passes.
A family whose forward cannot run on meta is given a stand-in (`STAND_INS`, said in the table) or left without
activations (the reason is saved). Checked on the CPU with Stable Diffusion 1.5's UNet, random bf16 weights: the
count on real tensors (with the CPU's own fused attention) is the one on meta to 0.04 % (the CPU's layer norm
keeps its statistics in bf16, the GPU's and meta's in fp32), and the memory the forward leaves allocated (torch's
profiler) is that count plus the output, to 0.03 % (the text states, an input, are in the count). On a small
HiDream (real routing on the CPU against the stand-ins on meta) the two counts agree to 0.2 %.

GPUs: one 80 GB GPU holds a group when the weights, its accumulators and one row's activations fit (data-parallel
attribution, or a single GPU); otherwise `--accumulators sharded` (torch FSDP2, `cadiff.models.sharding`: each
`_no_split_modules` block sharded, then the rest of the denoiser as one more unit) needs the smallest N for which
(weights + accumulators) / N, the largest unit gathered whole and one row's activations fit each GPU.

Writes bench/results/memory_model.json and the section `memory_model` of docs/cad.md.

    .venv/bin/python bench/memory_model.py
"""

from __future__ import annotations

import contextlib
import math
import weakref

import torch

from common import ROOT, Benchmark, require, table

GPU = 80 * 10**9
GROUPS = ("ff", "attn", "linear")
# denoiser class -> (family, the model its diffusers defaults describe)
DENOISERS = {
    "UNet2DConditionModel": ("unet", "Stable Diffusion 1.5"),
    "SD3Transformer2DModel": ("sd3", "SD3 (the class defaults: 18 blocks; SD3 Medium has 24)"),
    "PixArtTransformer2DModel": ("pixart", "PixArt-α XL (0.6B)"),
    "SanaTransformer2DModel": ("sana", "Sana 1.6B"),
    "FluxTransformer2DModel": ("flux", "Flux.1 [dev] / [schnell] (12B)"),
    "ChromaTransformer2DModel": ("chroma", "Chroma (8.9B)"),
    "QwenImageTransformer2DModel": ("qwenimage", "Qwen-Image (20B)"),
    "Flux2Transformer2DModel": ("flux2", "FLUX.2 [dev] (32B)"),
    "ZImageTransformer2DModel": ("zimage", "Z-Image (6B)"),
    "Lumina2Transformer2DModel": ("lumina2", "Lumina Image 2.0 (2.6B)"),
    "CogView4Transformer2DModel": ("cogview4", "CogView4 (the class defaults; CogView4-6B is larger)"),
    "HunyuanImageTransformer2DModel": ("hunyuanimage", "HunyuanImage 2.1 (17B)"),
    "HiDreamImageTransformer2DModel": ("hidream", "HiDream-I1 (17B; config written: its class has no defaults)"),
}
# Configs written where the class's defaults describe no model (from the published config)
WRITTEN = {"HiDreamImageTransformer2DModel": dict(
    patch_size=2, in_channels=16, out_channels=16, num_layers=16, num_single_layers=32, attention_head_dim=128,
    num_attention_heads=20, caption_channels=[4096, 4096], text_emb_dim=2048, num_routed_experts=4,
    num_activated_experts=2, axes_dims_rope=(64, 32, 32), max_resolution=(128, 128),
    llama_layers=[*range(16), *range(16, 32), *range(16, 32)])}


# One conditional denoiser call at batch 1 as each family's diffusers pipeline makes it: `c` is the denoiser's
# config, `side` the image's side in pixels, then the text's length in tokens (one per text encoder that the call
# reads separately). Text states are as wide as the denoiser reads them, and each tensor has the dtype the pipeline
# passes (its timestep: the latents' dtype for some, the scheduler's fp32 or int64 for others).

def _bf16(*shape):
    return torch.empty(shape, dtype=torch.bfloat16, device="meta")


def _ints(*shape):
    return torch.ones(shape, dtype=torch.int64, device="meta")


def _step(dtype=torch.float32):
    return torch.empty(1, dtype=dtype, device="meta")


def unet(c, side, clip):
    """Stable Diffusion 1.5: latents of side / 8 (the VAE's factor), CLIP's padded hidden states."""
    return dict(sample=_bf16(1, c.in_channels, side // 8, side // 8), timestep=_step(torch.int64),
                encoder_hidden_states=_bf16(1, clip, c.cross_attention_dim))


def sd3(c, side, clip, t5):
    """SD3: CLIP-L and -G's 77 tokens (widened to T5's width) then T5's, and the pooled CLIP embeddings."""
    return dict(hidden_states=_bf16(1, c.in_channels, side // 8, side // 8), timestep=_step(),
                encoder_hidden_states=_bf16(1, clip + t5, c.joint_attention_dim),
                pooled_projections=_bf16(1, c.pooled_projection_dim))


def pixart(c, side, t5):
    """PixArt-α: T5's padded hidden states and their mask; the size conditions of the 1024 model."""
    return dict(hidden_states=_bf16(1, c.in_channels, side // 8, side // 8), timestep=_step(torch.int64),
                encoder_hidden_states=_bf16(1, t5, c.caption_channels or c.cross_attention_dim),
                encoder_attention_mask=_ints(1, t5),
                added_cond_kwargs=dict(resolution=_bf16(1, 2), aspect_ratio=_bf16(1, 1)))


def sana(c, side, gemma):
    """Sana: latents of side / 32 (its DC-AE), Gemma 2's padded hidden states and their mask."""
    return dict(hidden_states=_bf16(1, c.in_channels, side // 32, side // 32), timestep=_step(),
                encoder_hidden_states=_bf16(1, gemma, c.caption_channels), encoder_attention_mask=_ints(1, gemma))


def flux(c, side, t5):
    """Flux.1: the latents' 2 x 2 patches packed into tokens, with their position ids and T5's; pooled CLIP."""
    tokens = (side // 16) ** 2
    call = dict(hidden_states=_bf16(1, tokens, c.in_channels), timestep=_step(torch.bfloat16),
                encoder_hidden_states=_bf16(1, t5, c.joint_attention_dim),
                pooled_projections=_bf16(1, c.pooled_projection_dim), img_ids=_bf16(tokens, 3), txt_ids=_bf16(t5, 3))
    if c.guidance_embeds:  # [dev]'s distilled guidance
        call["guidance"] = _step()
    return call


def chroma(c, side, t5):
    """Chroma: Flux's packed latents and ids, T5's padded hidden states, and the mask over text and image."""
    tokens = (side // 16) ** 2
    return dict(hidden_states=_bf16(1, tokens, c.in_channels), timestep=_step(torch.bfloat16),
                encoder_hidden_states=_bf16(1, t5, c.joint_attention_dim), img_ids=_bf16(tokens, 3),
                txt_ids=_bf16(t5, 3), attention_mask=_bf16(1, t5 + tokens))


def qwenimage(c, side, qwen):
    """Qwen-Image: packed latents, Qwen2.5-VL's hidden states (no mask: at batch 1 the pipeline drops it)."""
    tokens = side // 16
    return dict(hidden_states=_bf16(1, tokens * tokens, c.in_channels), timestep=_step(torch.bfloat16),
                encoder_hidden_states=_bf16(1, qwen, c.joint_attention_dim), img_shapes=[[(1, tokens, tokens)]])


def flux2(c, side, mistral):
    """FLUX.2: packed latents, Mistral 3's three stacked layers' padded hidden states, 4-axis ids, guidance."""
    tokens = (side // 16) ** 2
    return dict(hidden_states=_bf16(1, tokens, c.in_channels), timestep=_step(torch.bfloat16), guidance=_step(),
                encoder_hidden_states=_bf16(1, mistral, c.joint_attention_dim), img_ids=_ints(1, tokens, 4),
                txt_ids=_ints(1, mistral, 4))


def zimage(c, side, qwen):
    """Z-Image: lists of one image's latents (with a frame axis) and of its prompt's Qwen3 hidden states."""
    return dict(x=[_bf16(c.in_channels, 1, side // 8, side // 8)], t=_step(), cap_feats=[_bf16(qwen, c.cap_feat_dim)])


def lumina2(c, side, gemma):
    """Lumina 2: Gemma 2's padded hidden states; their mask on the CPU, as its forward reads the prompt's length
    from it (`.tolist()`): all of it counts."""
    return dict(hidden_states=_bf16(1, c.in_channels, side // 8, side // 8), timestep=_step(),
                encoder_hidden_states=_bf16(1, gemma, c.cap_feat_dim),
                encoder_attention_mask=torch.ones(1, gemma, dtype=torch.int64))


def cogview4(c, side, glm):
    """CogView4: GLM-4's hidden states, and the size and crop conditions."""
    return dict(hidden_states=_bf16(1, c.in_channels, side // 8, side // 8), timestep=_step(),
                encoder_hidden_states=_bf16(1, glm, c.text_embed_dim), original_size=_bf16(1, 2),
                target_size=_bf16(1, 2), crop_coords=_bf16(1, 2))


def hunyuanimage(c, side, qwen):
    """HunyuanImage 2.1: latents of side / 32, Qwen2.5-VL's padded hidden states and their mask (the class defaults
    read no ByT5 glyph states and no guidance)."""
    return dict(hidden_states=_bf16(1, c.in_channels, side // 32, side // 32), timestep=_step(torch.bfloat16),
                encoder_hidden_states=_bf16(1, qwen, c.text_embed_dim), encoder_attention_mask=_ints(1, qwen))


def hidream(c, side, t5, llama):
    """HiDream-I1: T5's padded hidden states, every layer's of Llama 3.1 (layer first), pooled CLIP-L and -G."""
    return dict(hidden_states=_bf16(1, c.in_channels, side // 8, side // 8), timesteps=_step(),
                encoder_hidden_states_t5=_bf16(1, t5, c.caption_channels[0]),
                encoder_hidden_states_llama3=_bf16(max(c.llama_layers) + 1, 1, llama, c.caption_channels[1]),
                pooled_embeds=_bf16(1, c.text_emb_dim))


# denoiser class -> (its call's inputs, the native side in pixels, text tokens per text encoder): the pipelines'
# default size, and their `max_sequence_length` (the length they pad to; Qwen-Image, Z-Image and CogView4 keep the
# prompt's own length up to it, and Lumina 2's forward drops the padding: for them it is the longest prompt)
INPUTS = {
    "UNet2DConditionModel": (unet, 512, (77,)),
    "SD3Transformer2DModel": (sd3, 1024, (77, 256)),
    "PixArtTransformer2DModel": (pixart, 1024, (120,)),
    "SanaTransformer2DModel": (sana, 1024, (300,)),
    "FluxTransformer2DModel": (flux, 1024, (512,)),
    "ChromaTransformer2DModel": (chroma, 1024, (512,)),
    "QwenImageTransformer2DModel": (qwenimage, 1024, (512,)),
    "Flux2Transformer2DModel": (flux2, 1024, (512,)),
    "ZImageTransformer2DModel": (zimage, 1024, (512,)),
    "Lumina2Transformer2DModel": (lumina2, 1024, (256,)),
    "CogView4Transformer2DModel": (cogview4, 1024, (1024,)),
    "HunyuanImageTransformer2DModel": (hunyuanimage, 2048, (1000,)),
    "HiDreamImageTransformer2DModel": (hidream, 1024, (128, 128)),
}


def hidream_stand_ins(net, side):
    """HiDream's routed experts run without gradient (diffusers' `moe_infer` is under torch.no_grad), so they keep
    nothing for the backward pass, but their routing cannot run on meta (bincount): zeros of their output's shape
    stand in. Its unpatchify reads the patch grid from a tensor (`.item()`): given as numbers."""
    for module in net.modules():
        if hasattr(module, "moe_infer"):
            module.moe_infer = lambda x, *routing: torch.zeros_like(x)
    unpatchify = net.unpatchify
    net.unpatchify = lambda x, sizes, training: unpatchify(x, [(side // 16, side // 16)] * len(sizes), training)


# denoiser class -> what stands in for the parts of its forward that cannot run on meta
STAND_INS = {"HiDreamImageTransformer2DModel": hidream_stand_ins}
# what the table says of a family's input or stand-ins
NOTES = {
    "UNet2DConditionModel": "the class defaults read 1280-wide text states (SD 1.5's CLIP ViT-L gives 768)",
    "PixArtTransformer2DModel": "the class defaults have no caption projection: 1152-wide text states (T5 gives "
                                "4096)",
    "QwenImageTransformer2DModel": "1024: the pipeline's default size (Qwen-Image's published square size is "
                                   "1328, 1.7x the image tokens)",
    "Lumina2Transformer2DModel": "the class defaults read 1024-wide text states (Gemma 2 gives 2304); the mask "
                                 "is given on the CPU, as the forward reads the prompt's length from it (all 256 "
                                 "tokens count)",
    "HiDreamImageTransformer2DModel": "the routed experts run without gradient and keep nothing: on meta, zeros "
                                      "of their output's shape stand in for them (their routing cannot run there)",
}


class _FusedAttention(torch.autograd.Function):
    """What the GPU's fused attention kernels keep for the backward pass: the queries, keys, values, the output
    (allocated as (batch, tokens, heads, dim), handed back transposed), the log-sum-exp (fp32) and the mask as an
    additive bias. Meta tensors only: the forward makes the output's shape and no values."""

    @staticmethod
    def forward(ctx, query, key, value, bias):
        *batch, heads, tokens, _ = query.shape
        out = query.new_empty(*batch, tokens, heads, value.shape[-1]).transpose(-3, -2)
        logsumexp = torch.empty(query.shape[:-1], dtype=torch.float32, device=query.device)
        ctx.save_for_backward(query, key, value, out, logsumexp, bias)
        return out

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError("counts the forward only")


@contextlib.contextmanager
def _fused_attention():
    """`scaled_dot_product_attention` as the GPU's fused kernels keep it (every diffusers processor calls it
    through torch.nn.functional)."""
    functional = torch.nn.functional
    stock = functional.scaled_dot_product_attention

    def attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        if attn_mask is not None and attn_mask.dtype == torch.bool:  # made an additive bias of the query's dtype
            attn_mask = torch.zeros(attn_mask.shape, dtype=query.dtype, device=query.device)
        return _FusedAttention.apply(query, key, value, attn_mask)

    functional.scaled_dot_product_attention = attention
    try:
        yield
    finally:
        functional.scaled_dot_product_attention = stock


@contextlib.contextmanager
def _same_dtypes(net):
    """Linear and convolution layers refuse an input whose dtype is not their weights', as on the GPU."""
    def check(module, args):
        if args and torch.is_tensor(args[0]) and args[0].dtype != module.weight.dtype:
            raise TypeError(f"a {type(module).__name__} of {module.weight.dtype} weights called on {args[0].dtype}")

    layers = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    hooks = [m.register_forward_pre_hook(check) for m in net.modules() if isinstance(m, layers)]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def activations(net, call: dict, group: str) -> tuple[int, int]:
    """The bytes autograd keeps for the backward pass of `net(**call)` (meta tensors) with exactly `group`'s weights
    requiring grad, and the output's bytes. Each storage a saved tensor is in counts once, if it is still held when
    the forward returns, and not at all if it is a weight's or a buffer's."""
    from cadiff.attribution import select_parameters

    chosen = {id(p) for p in select_parameters(net, group).values()}
    for p in net.parameters():
        p.requires_grad_(id(p) in chosen)
    state = {t.untyped_storage()._cdata for t in [*net.parameters(), *net.buffers()]}
    saved = {}  # storage -> (its bytes, the saved tensors in it, weakly)

    def alive(refs):
        return any(ref() is not None for ref in refs)

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage._cdata in state:
            return tensor
        if storage._cdata not in saved or not alive(saved[storage._cdata][1]):  # new, or where a freed one was
            saved[storage._cdata] = (storage.nbytes(), [])
        saved[storage._cdata][1].append(weakref.ref(tensor))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), _fused_attention(), _same_dtypes(net):
        out = net(**call, return_dict=False)[0]
    out = out[0] if isinstance(out, list) else out  # (Z-Image answers a list)
    held = sum(size for size, refs in saved.values() if alive(refs))
    return held, out.numel() * out.element_size()


def largest_unit(net) -> int:
    """The bf16 bytes of the largest unit FSDP2 gathers whole, as `cadiff.models.sharding` shards: each
    `_no_split_modules` block, inner ones first, with the parameters no inner unit holds; then the denoiser with the
    rest."""
    blocks = set(getattr(net, "_no_split_modules", None) or ())
    units = [m for m in reversed(list(net.modules())) if type(m).__name__ in blocks] + [net]
    taken, sizes = set(), []
    for unit in units:
        own = [p for p in unit.parameters() if id(p) not in taken]
        taken.update(id(p) for p in own)
        sizes.append(2 * sum(p.numel() for p in own))
    return max(sizes)


class MemoryModel(Benchmark):
    name = "memory_model"
    summary = ("weights, accumulator and activation bytes of every family's full-size denoiser (meta device), and "
               "GPUs needed")
    doc, title = ROOT / "docs" / "cad.md", "# CAD"

    def report(self, results: dict, args) -> str:
        return report(results)

    def run(self, args) -> dict:
        import diffusers

        from cadiff.attribution import select_parameters
        from cadiff.attribution.components import grouped_scores

        diffusers.utils.logging.set_verbosity_error()  # (casting a model built on meta to bf16 warns)
        out = {}
        for name, (family, model) in DENOISERS.items():
            with torch.device("meta"):
                net = getattr(diffusers, name)(**WRITTEN.get(name, {})).to(torch.bfloat16).eval()
            inputs, side, text = INPUTS[name]
            if name in STAND_INS:
                STAND_INS[name](net, side)
            params = sum(p.numel() for p in net.parameters())
            row = {"family": family, "model": model, "parameters": params, "weights_bf16": 2 * params,
                   "largest_unit_bf16": largest_unit(net), "image": side, "text_tokens": list(text),
                   "note": NOTES.get(name), "failed": None}
            for group in GROUPS:  # the weights `attribute` scores: a fused weight's slices in the group (meta tensors)
                scored = sum(w.numel() for w in grouped_scores(net, group, select_parameters(net, group))[0].values())
                row[f"accumulators_{group}"] = 4 * scored
                try:
                    row[f"activations_{group}"], row["output_bytes"] = activations(net, inputs(net.config, side, *text),
                                                                                   group)
                except Exception as exc:  # a forward meta tensors cannot run: no activations, and why
                    row[f"activations_{group}"] = row["output_bytes"] = None
                    row["failed"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
                held = row[f"activations_{group}"]
                row[f"one_gpu_{group}"] = None if held is None else 2 * params + 4 * scored + held <= GPU
                row[f"gpus_{group}"] = None if held is None else gpus(2 * params, 4 * scored, held,
                                                                      row["largest_unit_bf16"])
            out[name] = row
            print(name, row, flush=True)
        return {"gpu_bytes": GPU, "denoisers": out}


def gpus(weights: int, accumulators: int, activations: int, unit: int) -> int | None:
    """80 GB GPUs attribution needs with one row: 1 where one holds the weights, accumulators and activations; else
    with `--accumulators sharded` the smallest N for which (weights + accumulators) / N, the largest unit gathered
    whole and the activations fit each (None: the unit and the activations alone do not fit one)."""
    if weights + accumulators + activations <= GPU:
        return 1
    room = GPU - unit - activations
    return None if room <= 0 else max(2, math.ceil((weights + accumulators) / room))


def report(results: dict) -> str:
    rows, notes = [], []
    require(next(iter(results["denoisers"].values())), *[f"activations_{g}" for g in GROUPS])
    for name, r in results["denoisers"].items():
        remark = f"activations not counted: {r['failed']}" if r["failed"] else r["note"]
        if remark:
            notes.append(remark)
        mark = f" ({len(notes)})" if remark else ""
        rows.append([r["model"], name + mark, f"{r['parameters'] / 1e9:.2f} B", f"{r['weights_bf16'] / 1e9:.1f}",
                     f"{r['largest_unit_bf16'] / 1e9:.2f}",
                     f"{r['image']} / {' + '.join(str(t) for t in r['text_tokens'])}",
                     *[f"{r[f'accumulators_{g}'] / 1e9:.1f}" for g in GROUPS],
                     *[gb(r[f"activations_{g}"]) + {True: " (yes)", False: " (no)", None: ""}[r[f"one_gpu_{g}"]]
                       for g in GROUPS],
                     *[count(r[f"gpus_{g}"]) for g in GROUPS]])
    head = ("Each family's denoiser built on the meta device from its diffusers class's defaults (the model they "
            "describe in the first column; `bench/memory_model.py`), in GB: the weights in bf16; the largest unit "
            "`--accumulators sharded` gathers whole on every GPU (one `_no_split_modules` block, or the rest of the "
            "denoiser, bf16); the input (*image / text*: the native side in pixels and the text tokens of each text "
            "encoder: the pipeline's `max_sequence_length`, the length it pads to; Qwen-Image, Z-Image, CogView4 and "
            "Lumina 2 keep the prompt's own length up to it, so theirs is the longest prompt's); the fp32 "
            "accumulators `attribute` keeps for each component group (one fp32 copy of the weights it scores); the "
            "activations of one row: what autograd keeps for the backward pass of one conditional forward at batch "
            "1, at that input, in bf16, with the group's weights requiring grad (each tensor once, the weights not, "
            "attention as the GPU's fused kernels keep it), and in brackets whether one 80 GB GPU holds the weights, "
            "the group's accumulators and these activations (what data-parallel attribution needs on each GPU). "
            "`--batch-size` multiplies the activations; `--checkpointing` cuts them to roughly the blocks' inputs; "
            "the backward pass needs some working memory on top. The groups' activations differ by up to 1.8x "
            "(`linear` keeps the input of every layer it scores), so each has its column. *GPUs*: how many 80 GB "
            "GPUs attribution needs for one row: 1 where one holds it all, else with `--accumulators sharded` (torch "
            "FSDP2) the fewest that each hold their share of the weights and accumulators, the largest unit and the "
            "activations (> 64: they leave almost no room); – where the largest unit and the activations alone do "
            "not fit one. JSON: `bench/results/memory_model.json`.")
    body = table(["model", "denoiser", "parameters", "weights bf16", "largest unit", "image / text",
                  *[f"accumulators {g}" for g in GROUPS], *[f"activations {g} (one GPU)" for g in GROUPS],
                  *[f"GPUs {g}" for g in GROUPS]], rows)
    return head + "\n\n" + body + "".join(f"\n\n({i}) {note}." for i, note in enumerate(notes, 1))


def gb(value: int | None) -> str:
    return "–" if value is None else f"{value / 1e9:.1f}"


def count(gpus: int | None) -> str:
    return "–" if gpus is None else "> 64" if gpus > 64 else str(gpus)


if __name__ == "__main__":
    MemoryModel().main()
