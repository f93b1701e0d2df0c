"""The check that every word of a prompt is known to the model's tokenizer (closed vocabularies, like the embedded
model's, read an unknown word as <unk>, so the image would not show what the prompt says).

Example:
    >>> from cadiff.models.vocabulary import check_known_words
    >>> check_known_words(pipe, ["a teal circle"])                               # doctest: +SKIP
    ValueError: unknown word 'teal' in prompt 'a teal circle': ...
"""

from __future__ import annotations

from typing import Sequence


def _tokenizers(pipe) -> list:
    return [t for t in (getattr(pipe, "tokenizer", None), getattr(pipe, "tokenizer_2", None)) if t is not None]


def unknown_words(tokenizer, prompt: str) -> list[str]:
    """Words of `prompt` that `tokenizer` maps to its unknown token (empty for open-vocabulary tokenizers)."""
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None or unk not in tokenizer(prompt, add_special_tokens=False).input_ids:  # one call for the prompt
        return []
    return [w for w in prompt.split() if unk in tokenizer(w, add_special_tokens=False).input_ids]


def check_known_words(pipe, prompts: Sequence[str]) -> None:
    """Raise ValueError naming the first word a tokenizer of `pipe` does not know (closed vocabularies)."""
    for tokenizer in _tokenizers(pipe):
        for prompt in prompts:
            bad = unknown_words(tokenizer, prompt)
            if bad:
                known = ""
                vocab = tokenizer.get_vocab() if len(tokenizer) < 200 else None
                if vocab:
                    words = [w for w in sorted(vocab, key=vocab.get) if not w.startswith("<|")]
                    known = f"; the model knows: {', '.join(words)}"
                raise ValueError(f"unknown word '{bad[0]}' in prompt '{prompt}': the model's tokenizer has no token "
                                 f"for it, so it would read as <unk>{known}")
