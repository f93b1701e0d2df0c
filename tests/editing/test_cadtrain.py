"""CAD-Train: ESD's fine-tuning on CAD's top weights only, with the concepts to keep held. Every other weight stays
as it was, bit for bit, on every family; the edit exports as a sparse peft adapter; `cadiff erase --method cadtrain`
writes a run that `cadiff attack` reads."""

import pytest
import torch

import cadiff
from cadiff.editing.methods.cadtrain import CADTrain, CADTrainConfig
from cadiff.models.loading import denoiser
from tiny_pipelines import tiny_sd

EVERY_FAMILY = ["sd1", "sd2", "sdxl", "sd3", "pixart", "sana", "flux", "qwenimage", "chroma", "flux2", "zimage",
                "lumina2", "cogview4", "hunyuanimage", "hidream"]
QUICK = dict(seeds=1, steps=2, iterations=2, ratio=0.1)


def _changed(pipe, edited) -> dict[str, torch.Tensor]:
    """Where the edited denoiser's weights differ from the original's (flat indices, by parameter)."""
    theirs = dict(denoiser(edited).named_parameters())
    return {n: (theirs[n] != p).view(-1).nonzero().view(-1) for n, p in denoiser(pipe).named_parameters()
            if not torch.equal(theirs[n], p)}


@pytest.mark.parametrize("name", EVERY_FAMILY)
def test_only_the_weights_cad_points_at_train_and_not_those_that_read_the_text(name):
    pipe = tiny_sd(name)
    result = cadiff.erase(pipe, "a red circle", CADTrainConfig(**QUICK), preserve=["a blue square"], progress=False)
    (attr,) = result.attributions
    text = CADTrain.text_weights(pipe)
    scored = attr.select(ratio=0.1, scope="row")
    assert text and text & set(scored.indices)  # CAD points at some of them, and they are left out
    region = scored.without(text)
    changed = _changed(pipe, result.pipeline)
    assert changed and result.method == "cadtrain" and result.info["region"] == len(region)
    for param, where in changed.items():  # inside the region, and nowhere else
        assert param in region.indices and set(where.tolist()) <= set(region.indices[param].tolist()), param
    assert result.info["trained_elements"] == len(region)


def test_the_weights_that_read_the_text_train_when_asked():
    pipe = tiny_sd("sd1")
    result = cadiff.erase(pipe, "a red circle", CADTrainConfig(**QUICK, train_text=True), preserve=["a blue square"],
                          progress=False)
    (attr,) = result.attributions
    assert result.info["region"] == len(attr.select(ratio=0.1, scope="row"))
    assert set(_changed(pipe, result.pipeline)) & CADTrain.text_weights(pipe)


def test_the_keep_term_holds_the_concepts_to_keep():
    """The same erase with and without the term that holds the concepts to keep: with it, the kept concept's output
    moves less from the original model's."""
    from cadiff.models.trace import DenoiserTrace, generators, sample

    pipe = tiny_sd("sd1")
    settings = dict(seeds=1, steps=2, iterations=8, ratio=0.3, lr=3e-2)
    held = cadiff.erase(pipe, "a red circle", CADTrainConfig(**settings), preserve=["a blue square"], progress=False)
    loose = cadiff.erase(pipe, "a red circle", CADTrainConfig(**settings, keep_weight=0), preserve=["a blue square"],
                         progress=False)

    def output(p):
        with DenoiserTrace(p, record=1) as trace:
            sample(p, ["a blue square"], generators([7]), 2, 4.0)
        call = trace.steps[0]
        return denoiser(p)(call.sample, call.timestep, **call.kwargs).sample

    with torch.no_grad():
        original = output(pipe)
        assert (output(held.pipeline) - original).norm() < (output(loose.pipeline) - original).norm()


def test_a_cadtrain_edit_exports_as_a_sparse_peft_adapter(tmp_path):
    from cadiff.exports.peft import attach

    pipe = tiny_sd("sd1")
    result = cadiff.erase(pipe, "a red circle", CADTrainConfig(**QUICK), preserve=["a blue square"], progress=False)
    fresh = tiny_sd("sd1")
    attach(fresh, result.export(tmp_path / "adapter", format="peft"), "erase")
    assert (cadiff.generate(fresh, ["a red circle"], [0], steps=2) ==
            cadiff.generate(result.pipeline, ["a red circle"], [0], steps=2)).all()


def test_cadiff_erase_method_cadtrain_writes_a_run_that_cadiff_attack_reads(shapes_like, tmp_path):
    import json

    from cadiff.cli import main

    assert main(["erase", "circle", "--method", "cadtrain", "--seeds", "1", "--iterations", "2", "--ratio", "0.1",
                 "--model", str(shapes_like), "--out", str(tmp_path / "erase")]) == 0
    record = json.loads((tmp_path / "erase" / "run.json").read_text())
    assert record["edit"]["method"] == "cadtrain" and record["edit"]["region"] > 0
    assert main(["attack", str(tmp_path / "erase"), "circle", "--attacks", "prompt", "--prompt-limit", "2",
                 "--per-prompt", "1", "--model", str(shapes_like), "--out", str(tmp_path / "attack")]) == 0
    assert (tmp_path / "attack" / "run.json").is_file()
