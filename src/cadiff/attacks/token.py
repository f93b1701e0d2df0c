"""The learned-token attack (textual inversion on the edited model; Pham et al. 2023): one new token whose
embedding is optimised with the model's own denoising loss on images of the concept (rendered by the world, or a
folder), everything else frozen, for a fixed budget; then the concept's prompts with the token in place of its
word. The same budget on the original model is the reference row `token on original`.

Supports pipelines with one tokenizer and one text encoder (SD 1.x / 2.x and the embedded model)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from cadiff.adapters import adapter_for
from cadiff.attacks import Attack, Outcome, Target, register_attack
from cadiff.attribution.estimators import image_latents
from cadiff.editing.copies import with_components
from cadiff.errors import BadInput
from cadiff.config import Config, option
from cadiff.models.loading import denoiser, resolve_sampling

TOKEN = "<concept>"


def with_token(text: str, concept: str) -> str:
    """`text` with every word that is `concept` replaced by the learned token ('a red circle' -> 'a red <concept>')."""
    return " ".join(TOKEN if w == concept else w for w in text.split())


@dataclass(frozen=True)
class TokenConfig(Config):
    token_steps: int = option(300, "learned token: optimisation steps (default 300)", low=1)
    token_lr: float = option(5e-3, "learned token: Adam learning rate (default 5e-3)")
    token_batch: int = option(32, "learned token: images per step (default 32)", low=1)
    token_images: int = option(96, "learned token: concept images (default 96, rendered by the world)",
                               low=1)
    token_init: str = option("shape", "learned token: the word its embedding starts from (default 'shape')")
    token_folder: str | None = option(None, "learned token: a folder of concept images instead of rendered ones")
    token_seed: int = option(0, "learned token: seed of the images, batches and noise (default 0)")


def _single_encoder(pipe) -> bool:
    return getattr(pipe, "text_encoder", None) is not None and getattr(pipe, "text_encoder_2", None) is None \
        and getattr(pipe, "tokenizer", None) is not None


@register_attack
class TokenAttack(Attack):
    name = "token"
    summary = "textual inversion on the edited model: one learned token, then the concept's prompts with it"
    config_class = TokenConfig

    def check(self, target: Target) -> None:
        if not _single_encoder(target.original):
            raise BadInput(f"the learned-token attack supports pipelines with one text encoder (SD 1.x/2.x, the "
                           f"embedded model), not {type(target.original).__name__}; leave out --attacks token")
        if self.config.token_folder is None and target.world is None:
            raise BadInput("the learned-token attack needs concept images on this model: --token-folder DIR")
        ids = target.original.tokenizer(self.config.token_init, add_special_tokens=False).input_ids
        if len(ids) != 1 or ids[0] == target.original.tokenizer.unk_token_id:
            raise BadInput(f"--token-init '{self.config.token_init}' is not one word of the tokenizer; give one")

    def data(self, target: Target):
        cfg = self.config
        if cfg.token_folder is not None:
            from cadiff.attribution.objectives.amplify import read_image_folder

            net = denoiser(target.original)
            pixels = read_image_folder(cfg.token_folder, adapter_for(net).image_size(target.original, net))
            return pixels, [f"a {TOKEN}"] * len(pixels)
        images, captions = target.world.concept_images(target.concept, cfg.token_images, seed=cfg.token_seed)
        pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
        return pixels, [with_token(c, target.concept) for c in captions]

    def prompts(self, target: Target) -> list[str]:
        """The concept's phrasings with its word replaced by the token (the world's), or 'a <token>'."""
        if target.world is None:
            return [f"a {TOKEN}", f"an image of a {TOKEN}"]
        out = [with_token(p, target.concept) for p in target.world.phrasings(target.concept)]
        return list(dict.fromkeys(p for p in out if TOKEN in p.split()))[:32]

    def run(self, target: Target) -> Outcome:
        pixels, captions = self.data(target)
        prompts = self.prompts(target)
        learned, losses = learn_token(target.edited, pixels, captions, self.config)
        edited, images = target.success(learned, prompts)
        original = target.reference(f"token {self.config}", lambda: target.success(
            learn_token(target.original, pixels, captions, self.config)[0], prompts)[0])
        info = {"prompts": len(prompts), "images": len(pixels), "loss_first": losses[0], "loss_last": losses[-1]}
        return Outcome(self.name, self.config.to_dict(), edited, original, info=info, images=images)


def learn_token(pipe, pixels: torch.Tensor, captions: list[str], cfg: TokenConfig):
    """A copy of `pipe` whose tokenizer knows TOKEN, its embedding learned on (pixels, captions); the loss per step.
    The original pipeline's tokenizer and text encoder are not changed."""
    tokenizer, encoder = copy.deepcopy(pipe.tokenizer), copy.deepcopy(pipe.text_encoder)
    tokenizer.add_tokens([TOKEN])
    encoder.resize_token_embeddings(len(tokenizer))
    row = tokenizer.convert_tokens_to_ids(TOKEN)
    table = encoder.get_input_embeddings()
    init = tokenizer(cfg.token_init, add_special_tokens=False).input_ids[0]
    vector = torch.nn.Parameter(table.weight[init].detach().clone().float())
    hook = table.register_forward_hook(
        lambda module, args, out: torch.where((args[0] == row)[..., None], vector.to(out.dtype), out))
    learned = with_components(pipe, tokenizer=tokenizer, text_encoder=encoder)
    net = denoiser(pipe)
    adapter = adapter_for(net)
    steps, _ = resolve_sampling(pipe, None, None)
    frozen = [p for p in [*net.parameters(), *encoder.parameters()] if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    generator = torch.Generator().manual_seed(cfg.token_seed)
    losses = []
    try:
        x0 = torch.cat([image_latents(pipe, pixels[i: i + 64]) for i in range(0, len(pixels), 64)]).to(net.dtype)
        adapter.set_schedule(pipe, int(steps), x0)
        timesteps = pipe.scheduler.timesteps
        optimiser = torch.optim.Adam([vector], lr=cfg.token_lr)
        for _ in range(cfg.token_steps):
            idx = torch.randint(len(x0), (min(cfg.token_batch, len(x0)),), generator=generator)
            i = int(torch.randint(len(timesteps), (1,), generator=generator))
            noise = torch.randn(x0[idx].shape, generator=generator).to(x0)
            sample, goal = adapter.noised(pipe.scheduler, x0[idx], noise, i)
            t = timesteps[i]
            ids = tokenizer([captions[j] for j in idx.tolist()], padding="max_length", truncation=True,
                            max_length=tokenizer.model_max_length, return_tensors="pt").input_ids.to(encoder.device)
            states = encoder(ids)[0].to(net.dtype)
            pred = adapter.forward(net, adapter.model_input(pipe.scheduler, sample, t), adapter.model_timestep(t),
                                   {"encoder_hidden_states": states})
            loss = torch.nn.functional.mse_loss(pred.float(), goal.float())
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(round(float(loss.detach()), 5))
    finally:
        for p in frozen:
            p.requires_grad_(True)
    hook.remove()
    with torch.no_grad():
        table.weight[row] = vector.to(table.weight.dtype)
    return learned, losses
