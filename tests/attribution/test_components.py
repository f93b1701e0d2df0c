"""Component groups select the right parameters; empty or invalid selections are errors."""

import pytest

from cadiff.attribution.components import select_parameters
from tiny_pipelines import tiny_sd


def test_groups():
    unet = tiny_sd("sdxl").unet
    ff = select_parameters(unet, "ff")
    attn = select_parameters(unet, "attn")
    linear = select_parameters(unet, "linear")
    assert ff and all(n.endswith(("ff.net.0.proj.weight", "ff.net.2.weight")) for n in ff)
    assert all(".transformer_blocks." in n and p.ndim == 2 for n, p in linear.items())
    assert set(ff) | set(attn) <= set(linear) and not set(ff) & set(attn)
    assert len(select_parameters(unet, "all")) == len(list(unet.parameters()))
    assert set(select_parameters(unet, r"mid_block.*ff\.net\.2\.weight")) < set(ff)


def test_text_group_is_the_cross_attention_keys_and_values():
    unet = tiny_sd("sd1").unet
    text = select_parameters(unet, "text")
    cross = unet.config.cross_attention_dim
    assert text and all(n.endswith(("attn2.to_k.weight", "attn2.to_v.weight")) for n in text)
    assert all(p.shape[1] == cross for p in text.values())  # the text embedding is their input
    assert len(text) == 2 * sum(1 for n, _ in unet.named_parameters() if n.endswith("attn2.to_q.weight"))


def test_empty_or_invalid_selection():
    unet = tiny_sd("sd1").unet
    with pytest.raises(ValueError, match="selects no parameter"):
        select_parameters(unet, "nothing_matches_this")
    with pytest.raises(ValueError, match="regular expression"):
        select_parameters(unet, "ff[")
