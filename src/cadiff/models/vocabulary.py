"""The checks that every word of a prompt is known to the model's tokenizer (closed vocabularies, like the embedded
model's, read an unknown word as <unk>) and that the prompt fits its text encoder (diffusers cuts a longer one), so
the image can show what the prompt says. `allow_truncation(pipe)` lets a too-long prompt be cut, with a warning.

Example:
    >>> from cadiff.models.vocabulary import allow_truncation, check_known_words
    >>> check_known_words(pipe, ["a teal circle"])                               # doctest: +SKIP
    ValueError: unknown word 'teal' in prompt 'a teal circle': ...
    >>> check_known_words(pipe, ["an image of a red striped star"])              # doctest: +SKIP
    ValueError: prompt 'an image of a red striped star' is 9 tokens, but ... 'star' would be cut; ...
    >>> check_known_words(allow_truncation(pipe), ["an image of a red striped star"])   # doctest: +SKIP
    UserWarning: prompt 'an image of a red striped star' is 9 tokens, ...: 'star' was cut
"""

from __future__ import annotations

import inspect
import warnings
from typing import Sequence

from cadiff.errors import BadInput

# Set on a pipeline by `allow_truncation`: the prompts already warned about (one warning each).
TRUNCATE_ATTRIBUTE = "_cadiff_truncated"


def _tokenizers(pipe) -> list:
    return [t for t in (getattr(pipe, "tokenizer", None), getattr(pipe, "tokenizer_2", None)) if t is not None]


def unknown_words(tokenizer, prompt: str) -> list[str]:
    """Words of `prompt` that `tokenizer` maps to its unknown token (empty for open-vocabulary tokenizers)."""
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None or unk not in tokenizer(prompt, add_special_tokens=False, verbose=False).input_ids:
        return []  # one call for the prompt
    return [w for w in prompt.split() if unk in tokenizer(w, add_special_tokens=False).input_ids]


def token_limits(pipe) -> list[tuple[object, int]]:
    """(tokenizer, most tokens its encoder reads) for each limit a prompt must fit: the long-context encoder's (T5 or
    Gemma, the pipeline's default `max_sequence_length`) where the pipeline has one, since diffusers cuts its CLIP
    prompts by design there; else each CLIP tokenizer's `model_max_length`."""
    length = inspect.signature(type(pipe).__call__).parameters.get("max_sequence_length")
    if length is not None:
        for suffix in ("_3", "_2", ""):
            tokenizer, encoder = getattr(pipe, "tokenizer" + suffix, None), getattr(pipe, "text_encoder" + suffix, None)
            if tokenizer is not None and encoder is not None and "CLIP" not in type(encoder).__name__:
                return [(tokenizer, length.default)]
    return [(t, t.model_max_length) for t in _tokenizers(pipe)]


def cut_text(tokenizer, limit: int, prompt: str) -> tuple[int, str]:
    """How many tokens `prompt` is (special tokens included) and the text beyond `limit` ('' if it fits)."""
    ids = tokenizer(prompt, add_special_tokens=False, verbose=False).input_ids
    special = len(tokenizer(prompt, verbose=False).input_ids) - len(ids)
    cut = ids[max(limit - special, 0):]
    return len(ids) + special, tokenizer.decode(cut).strip() if cut else ""


def allow_truncation(pipe):
    """Let `pipe` cut prompts longer than its text encoder reads (as diffusers does), with one warning per prompt
    naming what was cut, instead of refusing them; returns `pipe`. Copies made of it afterwards (edits) inherit it."""
    setattr(pipe, TRUNCATE_ATTRIBUTE, set())
    return pipe


def check_prompt_lengths(pipe, prompts: Sequence[str]) -> None:
    """Raise ValueError naming the first prompt the text encoder of `pipe` would cut, or, after
    `allow_truncation(pipe)`, warn once per such prompt naming what is cut."""
    warned, limits = getattr(pipe, TRUNCATE_ATTRIBUTE, None), token_limits(pipe)
    for prompt in prompts:
        for tokenizer, limit in limits:
            count, cut = cut_text(tokenizer, limit, prompt)
            if not cut:
                continue
            said = (f"prompt '{prompt}' is {count} tokens, but the model's text encoder reads at most {limit} "
                    "(special tokens included)")
            if warned is None:
                raise BadInput(f"{said}: '{cut}' would be cut; shorten the prompt, or pass --truncate (Python: "
                               "cadiff.models.vocabulary.allow_truncation(pipe)) to cut it with a warning")
            if prompt not in warned:
                warned.add(prompt)
                warnings.warn(f"{said}: '{cut}' was cut", stacklevel=3)
            break


def check_known_words(pipe, prompts: Sequence[str]) -> None:
    """Raise ValueError naming the first word a tokenizer of `pipe` does not know (closed vocabularies), then the
    first prompt too long for its text encoder (see `check_prompt_lengths`)."""
    for tokenizer in _tokenizers(pipe):
        for prompt in prompts:
            bad = unknown_words(tokenizer, prompt)
            if bad:
                known = ""
                vocab = tokenizer.get_vocab() if len(tokenizer) < 200 else None
                if vocab:
                    words = [w for w in sorted(vocab, key=vocab.get) if not w.startswith("<|")]
                    known = f"; the model knows: {', '.join(words)}"
                raise BadInput(f"unknown word '{bad[0]}' in prompt '{prompt}': the model's tokenizer has no token "
                               f"for it, so it would read as <unk>{known}")
    check_prompt_lengths(pipe, prompts)
