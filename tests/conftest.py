"""Shared fixtures: the shipped shapes model (loaded once), tiny random pipelines built from configs and a tiny
random shapes evaluator on disk."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def shapes_pipe():
    """The embedded shapes pipeline, as `cadiff.load_pipeline()` returns it."""
    import cadiff

    return cadiff.load_pipeline()


@pytest.fixture(scope="session")
def evaluator():
    from cadiff.worlds.shapes import load_evaluator

    return load_evaluator()


@pytest.fixture(scope="session")
def tiny_pipe():
    from tiny_pipelines import tiny_sd

    return tiny_sd("sd1")


@pytest.fixture(scope="session")
def tiny_evaluator(tmp_path_factory):
    from cadiff.worlds.shapes.architecture import EvaluatorConfig, ShapesClassifier
    from cadiff.worlds.shapes.evaluator import save_evaluator

    torch.manual_seed(0)
    cfg = EvaluatorConfig(channels=(4, 8))
    path = tmp_path_factory.mktemp("evaluator") / "evaluator"
    save_evaluator(ShapesClassifier(cfg), cfg, path)
    return path


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """A tiny random CLIP folder (model, the closed-vocabulary tokenizer, an image processor for 32 px)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from cadiff.worlds.shapes.architecture import VOCAB, build_tokenizer

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(VOCAB), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=8, pad_token_id=0, bos_token_id=1,
                         eos_token_id=2),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2),
        projection_dim=8)
    path = tmp_path_factory.mktemp("clip") / "clip"
    CLIPModel(config).save_pretrained(path)
    build_tokenizer().save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return path


@pytest.fixture()
def shapes_like(tmp_path, monkeypatch):
    """A tiny pipeline saved as a shapes-world model (2 sampling steps), with a tiny evaluator as its judge."""
    import json

    import cadiff.worlds.shapes
    from cadiff.worlds.shapes.architecture import EvaluatorConfig, ShapesClassifier
    from cadiff.worlds.shapes.evaluator import ShapesEvaluator
    from tiny_pipelines import tiny_sd

    folder = tmp_path / "model"
    tiny_sd("sd1").save_pretrained(folder)
    (folder / "cadiff.json").write_text(json.dumps({"world": "shapes", "num_inference_steps": 2, "guidance_scale": 4.0}))
    tiny_eval = ShapesEvaluator(ShapesClassifier(EvaluatorConfig(channels=(4, 4, 4))))
    monkeypatch.setattr(cadiff.worlds.shapes, "load_evaluator", lambda path=None: tiny_eval)
    return folder


@pytest.fixture
def at_tiny_width(monkeypatch):
    """diffusers' single-file converters split some fused weights at the real models' widths: Flux.1's and Chroma's
    single blocks' linear1 into q, k, v of 3072 rows and an MLP of 4 x 3072, Lumina 2's qkv into 2304 + 768 + 768.
    Here at the tiny models' own widths, the same split otherwise."""
    from diffusers.loaders import single_file_utils

    from tiny_pipelines import tiny_sd

    lumina = tiny_sd("lumina2").transformer.config
    kv = lumina.num_kv_heads * (lumina.hidden_size // lumina.num_attention_heads)

    class TorchAtFileWidth:
        def __getattr__(self, name):
            return getattr(torch, name)

        @staticmethod
        def split(tensor, sizes, dim=0):
            if not isinstance(sizes, int) and list(sizes) == [3072, 3072, 3072, 4 * 3072] \
                    and tensor.shape[dim] != 7 * 3072:
                width = tensor.shape[dim] // 7
                sizes = [width, width, width, 4 * width]
            elif not isinstance(sizes, int) and list(sizes) == [2304, 768, 768] and tensor.shape[dim] != 3840:
                sizes = [lumina.hidden_size, kv, kv]
            return torch.split(tensor, sizes, dim)

    monkeypatch.setattr(single_file_utils, "torch", TorchAtFileWidth())
