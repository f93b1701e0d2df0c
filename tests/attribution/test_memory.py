"""A request whose recorded samples would not fit is refused after its first batch, saying the estimate; the
sampling bar has a total."""

import sys

import pytest

from cadiff.attribution import attribute
from tiny_pipelines import tiny_sd


@pytest.fixture(scope="module")
def sd2():
    return tiny_sd("sd2")


def test_a_request_that_would_not_fit_is_refused_after_one_batch(sd2, monkeypatch):
    module = sys.modules["cadiff.attribution.attribute"]  # the module, not the function of the same name
    import cadiff.models.memory as memory

    batches = []
    objective = module.get_objective("erase")
    original = type(objective).samples

    def counted(self, pipe, denoiser, rows, **kw):
        batches.append(len(rows))
        return original(self, pipe, denoiser, rows, **kw)

    monkeypatch.setattr(type(objective), "samples", counted)
    monkeypatch.setattr(memory, "free_bytes", lambda device: 1024)  # 1 KiB free
    with pytest.raises(ValueError, match=r"recording 40 trajectories of 2 steps would hold about .* GiB on cpu, "
                                         r"and 0\.0 GiB is free; ask for fewer seeds"):
        attribute(sd2, "a circle", seeds=40, steps=2, guidance=4.0, batch_size=16, progress=False)
    assert batches == [16]  # refused after the first batch: the other 24 trajectories never ran


def test_the_batches_give_the_scores_of_one_call(sd2, monkeypatch):
    """Sampling batch by batch is what the estimators do inside one call: the same numbers."""
    module = sys.modules["cadiff.attribution.attribute"]  # the module, not the function of the same name

    kw = dict(seeds=5, steps=2, guidance=4.0, batch_size=2, progress=False)
    batched = attribute(sd2, "a circle", **kw)
    objective = module.get_objective("erase")
    whole = module.Samples([], [], {})

    def at_once(pipe, unet, goal, rows, config, steps, guidance, images, only, progress):
        made = goal.samples(pipe, unet, rows, steps=steps, guidance=guidance, estimator=config.estimator,
                            base_prompt=config.base_prompt, batch_size=config.batch_size, images=images, only=only,
                            tick=None)
        whole.rows += made.rows
        return made

    monkeypatch.setattr(module, "_sample", at_once)
    single = attribute(sd2, "a circle", **kw)
    assert objective.name == "erase" and len(whole.rows) == 5
    assert single.metadata["J"] == batched.metadata["J"]
    assert all((single.scores[n] == batched.scores[n]).all() for n in single.scores)
