"""The prompt attack: every phrasing that asks for the concept. On a model of a world the world's phrasings (on the
embedded model: the bare prompt, 'an image of' it, every full caption naming it, and those reordered); else, or
with `prompts=FILE`, an adversarial prompt file (a CSV with a `prompt` column, as Ring-A-Bell, UnlearnDiffAtk and
MMA publish them)."""

from __future__ import annotations

from dataclasses import dataclass

from cadiff.attacks import Attack, Outcome, Target, register_attack
from cadiff.errors import BadInput
from cadiff.config import Config, option


@dataclass(frozen=True)
class PromptConfig(Config):
    prompts: str | None = option(None, "prompt attack: a prompt file (CSV with a prompt column, or one per line; "
                                       "default: the world's phrasings of the concept)")
    prompt_limit: int = option(64, "prompt attack: at most this many prompts (default 64)")


@register_attack
class PromptAttack(Attack):
    name = "prompt"
    summary = "every phrasing that asks for the concept, or a file of adversarial prompts"
    config_class = PromptConfig

    def prompts(self, target: Target) -> list[str]:
        if self.config.prompts:
            from cadiff.evaluation import load_prompts

            return [r.prompt for r in load_prompts(self.config.prompts).rows][: self.config.prompt_limit]
        return target.world.phrasings(target.concept)[: self.config.prompt_limit]

    def check(self, target: Target) -> None:
        if not self.config.prompts and target.world is None:
            raise BadInput("the prompt attack needs a prompt file on this model (--prompts FILE.csv: "
                           "Ring-A-Bell, UnlearnDiffAtk or MMA prompts)")
        from cadiff.models.vocabulary import check_known_words

        check_known_words(target.original, self.prompts(target))

    def run(self, target: Target) -> Outcome:
        prompts = self.prompts(target)
        edited, images = target.success(target.edited, prompts)
        original = target.reference(f"prompt {prompts}", lambda: target.success(target.original, prompts)[0])
        return Outcome(self.name, self.config.to_dict(), edited, original, info={"prompts": len(prompts)},
                       images=images)
