"""Sana denoisers (`SanaTransformer2DModel`): a linear-attention DiT on a flow-matching schedule (velocity units, as
SD3's); its blocks hold self-attention (`attn1`), cross-attention (`attn2`) and a convolutional feed-forward
(GLUMBConv: the 1x1 convolutions `conv_inverted` and `conv_point` are its linear maps, and count as weights of the
ff and linear groups)."""

from __future__ import annotations

import re

from cadiff.adapters import register_adapter
from cadiff.adapters.sd3 import SD3Adapter

POINTWISE = r"\.ff\.conv_(inverted|point)\.weight$"


@register_adapter
class SanaAdapter(SD3Adapter):
    name = "sana"
    denoisers = ("SanaTransformer2DModel",)
    latent_arg = "hidden_states"
    block = r"\.transformer_blocks\."
    ff = POINTWISE
    attn = r"\.attn[12]\."
    cross_attention = r"\.attn2\."
    text_input = r"\.attn2\.to_[kv]\.weight$"
    esd_frozen = r"^(proj_out|norm_out|time_embed|scale_shift_table|caption_projection)"  # output, time, text in

    def in_group(self, name, param, group):
        pointwise = re.search(self.block, f".{name}") is not None and re.search(POINTWISE, name) is not None
        if group in ("ff", "linear") and pointwise:
            return True
        return super().in_group(name, param, group)

    def _image_stream(self, output):
        return output[0] if isinstance(output, tuple) else output

    def with_block_tokens(self, args, kwargs, output, tokens, grid):
        return tokens
