"""SD3 / SD3.5 MMDiT denoisers (`SD3Transformer2DModel`): rectified flow, the output is the velocity
v = noise - x0 and the objective stays in those units; the joint blocks hold the components: attention of the
image stream (`attn.to_q/k/v`, `to_out.0`) and of the text stream (`add_q/k/v_proj`, `to_add_out`), feed-forward
of both streams (`ff`, `ff_context`)."""

from __future__ import annotations


from cadiff.adapters import DenoiserAdapter, register_adapter


@register_adapter
class SD3Adapter(DenoiserAdapter):
    name = "sd3"
    denoisers = ("SD3Transformer2DModel",)
    latent_arg = "hidden_states"
    block = r"\.transformer_blocks\."
    ff = r"\.ff(_context)?\.net\.(0\.proj|2)\.weight$"
    attn = r"\.attn2?\."
    cross_attention = r"\.attn\.(add_[qkv]_proj|to_add_out)\."  # joint attention: the text stream's projections
    text_input = r"\.attn\.add_[qkv]_proj\.weight$"
    esd_frozen = r"^(proj_out|norm_out|time_text_embed|context_embedder)\."

    def output_scale(self, scheduler, timestep):
        return 1.0  # velocity units: the model's own

    def _image_stream(self, output):
        return output[1]  # a joint block returns (text stream, image stream)

    def with_block_tokens(self, args, kwargs, output, tokens, grid):
        return (output[0], tokens)

    def noised(self, scheduler, x0, noise, index):
        sigma = scheduler.sigmas[index].to(x0.dtype)
        return (1.0 - sigma) * x0 + sigma * noise, noise - x0
