"""Past one process: two CPU processes (gloo), each taking every other trajectory, attribute what one process does
(scores to fp32 tolerance), as `torchrun --nproc-per-node 2` would run them."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from cadiff.attribution import attribute
from tiny_pipelines import tiny_sd

SETTINGS = dict(seeds=[0, 1, 2], steps=2, guidance=4.0, components="attn", progress=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    """`torchrun --nproc-per-node 2 -m cadiff ARGS`, one thread a process, its output captured."""
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    return subprocess.run([torchrun, "--nproc-per-node", "2", "--master-port", str(_free_port()), "-m", "cadiff",
                           *args], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          timeout=300)


def _rank(rank: int, world: int, port: int, out: str, extra: dict | None = None) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        pipe = tiny_sd("sd1")
        attr = attribute(pipe, ["a red circle", "a blue square"], preserve=["a green star"], **SETTINGS,
                         **(extra or {}))
        if extra:  # the denoiser stays sharded: each rank holds its part of every weight
            from torch.distributed.tensor import DTensor

            weight = pipe.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_k.weight
            assert isinstance(weight, DTensor) and weight.to_local().shape[0] == weight.shape[0] // world
        save_file({f"{i}/{name}": s for i, a in enumerate(attr) for name, s in a.scores.items()},
                  f"{out}/rank{rank}.safetensors", metadata={"J": json.dumps([a.metadata["J"] for a in attr]),
                                                             "processes": str(attr[0].metadata["processes"])})
        dist.barrier()  # both ranks done before either closes its connections
    finally:
        dist.destroy_process_group()


def _render_rank(rank: int, world: int, port: int, out: str, fail_on: int) -> None:
    """Each rank renders its share of 5 images; with `fail_on`, that rank's model is broken (NaN weights)."""
    import numpy as np
    import torch.distributed as dist

    from cadiff.models.generate import render

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    pipe = tiny_sd("sd1")
    if rank == fail_on:
        with torch.no_grad():
            pipe.unet.conv_out.weight.fill_(float("nan"))
    try:
        images = render(pipe, ["a red circle", "a blue square"] * 2 + ["a green star"], [0, 1, 2, 3, 4], steps=2,
                        guidance=4.0)
        np.save(f"{out}/rank{rank}.npy", images)
    except Exception as exc:  # noqa: BLE001  (what each rank stopped with)
        (Path(out) / f"rank{rank}.error").write_text(f"{type(exc).__name__}: {exc}")
    finally:
        dist.barrier()  # both ranks done before either closes its connections
        dist.destroy_process_group()


def test_two_processes_render_each_half_of_the_images_and_stop_together_on_a_failure(tmp_path):
    import numpy as np

    from cadiff.models import generate

    mp.start_processes(_render_rank, args=(2, _free_port(), str(tmp_path), -1), nprocs=2, join=True,
                       start_method="spawn")
    one = generate(tiny_sd("sd1"), ["a red circle", "a blue square"] * 2 + ["a green star"], [0, 1, 2, 3, 4], steps=2,
                   guidance=4.0)
    for rank in (0, 1):
        np.testing.assert_array_equal(np.load(tmp_path / f"rank{rank}.npy"), one)
    broken = tmp_path / "broken"
    broken.mkdir()
    mp.start_processes(_render_rank, args=(2, _free_port(), str(broken), 1), nprocs=2, join=True,
                       start_method="spawn")  # returns: no rank waits for the failed one forever
    assert "NaN" in (broken / "rank1.error").read_text() or "nan" in (broken / "rank1.error").read_text()
    assert (broken / "rank0.error").read_text().startswith("OtherRankFailed: another process of this run failed")


SHARDED = dict(accumulators="sharded", batch_size=2)  # 9 rows: rank 1's last call holds only a padding row


@pytest.mark.parametrize("extra", [None, SHARDED], ids=["rows", "sharded-denoiser"])
def test_two_processes_attribute_what_one_does(tmp_path, extra):
    """Each rank takes every other trajectory; with a sharded denoiser (FSDP2) each also holds half of every weight
    and of every fp32 sum, and both make the same calls (padding rows that count nothing)."""
    port = _free_port()
    mp.start_processes(_rank, args=(2, port, str(tmp_path), extra), nprocs=2, join=True, start_method="spawn")
    one = attribute(tiny_sd("sd1"), ["a red circle", "a blue square"], preserve=["a green star"], **SETTINGS)
    from safetensors import safe_open

    for rank in (0, 1):
        path = str(tmp_path / f"rank{rank}.safetensors")
        with safe_open(path, "pt") as f:
            meta = f.metadata()
        scores = load_file(path)
        assert meta["processes"] == "2" and one[0].metadata["processes"] == 1
        for i, (theirs, j) in enumerate(zip(one, json.loads(meta["J"]))):
            assert abs(j - theirs.metadata["J"]) <= 1e-5 * abs(theirs.metadata["J"])
            for name, score in theirs.scores.items():
                torch.testing.assert_close(scores[f"{i}/{name}"], score, rtol=1e-4, atol=1e-7)


def test_torchrun_runs_the_attribute_command_on_two_processes_and_rank_0_writes(tmp_path):
    """`torchrun --nproc-per-node 2 -m cadiff attribute ... --accumulators sharded`: the same scores as one process,
    one run folder; a command that runs in one process only is refused in one line."""

    from cadiff.attribution import Attribution
    from cadiff.cli import main

    tiny_sd("sd1").save_pretrained(tmp_path / "model")
    args = ["attribute", "a red circle", "--model", str(tmp_path / "model"), "--steps", "2", "--seeds", "3",
            "--components", "attn", "--guidance", "4"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    two = _torchrun(*args, "--accumulators", "sharded", "--out", str(tmp_path / "two"))  # the denoiser split too
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("wrote ") == 1  # rank 0 alone says what it did
    one_attr = Attribution.load(tmp_path / "one" / "a_red_circle.attr.safetensors")
    two_attr = Attribution.load(tmp_path / "two" / "a_red_circle.attr.safetensors")
    assert two_attr.metadata["processes"] == 2 and one_attr.metadata["processes"] == 1
    for name, score in one_attr.scores.items():
        torch.testing.assert_close(two_attr.scores[name], score, rtol=1e-4, atol=1e-7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "one", "two"]  # no second folder, no leftovers

    refused = _torchrun("sae", "train", str(tmp_path / "acts"), "--out", str(tmp_path / "s"))
    assert refused.returncode != 0 and "cadiff sae train runs in one process" in refused.stderr
    args = ["generate", "a red circle", "a blue square", "-n", "3", "--model", str(tmp_path / "model"), "--steps",
            "2"]  # each rank renders every other image, rank 0 writes them all
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank: the same float sums, so the same pixels to the bit
    try:
        assert main([*args, "--out", str(tmp_path / "g1")]) == 0
    finally:
        torch.set_num_threads(threads)
    gen = _torchrun(*args, "--out", str(tmp_path / "g2"))
    assert gen.returncode == 0, gen.stderr[-2000:]
    one, two = sorted((tmp_path / "g1" / "images").iterdir()), sorted((tmp_path / "g2" / "images").iterdir())
    assert [p.name for p in one] == [p.name for p in two] and len(one) == 6
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(one, two))
    assert gen.stdout.count("report: ") == 1  # one report, written by rank 0


def test_torchrun_runs_an_evaluation_on_two_processes_with_the_same_rows(tiny_pipe, tiny_evaluator, tmp_path):
    """`torchrun --nproc-per-node 2 -m cadiff evaluate ...`: each rank renders half of every batch, rank 0 scores and
    writes; the rows and metrics are the one-process run's."""

    from cadiff.cli import main

    tiny_pipe.save_pretrained(tmp_path / "model")
    args = ["evaluate", "--model", str(tmp_path / "model"), "--prompts", "shapes:star,blue", "--judge-weights",
            str(tiny_evaluator), "--metrics", "shapes", "--steps", "2", "--batch-size", "2", "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    two = _torchrun(*args, "--out", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-2000:]
    assert (tmp_path / "two" / "rows.csv").read_text() == (tmp_path / "one" / "rows.csv").read_text()
    one_metrics = json.loads((tmp_path / "one" / "metrics.json").read_text())["metrics"]
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["metrics"] == one_metrics
    assert sorted(p.name for p in (tmp_path / "two" / "images").iterdir()) == \
        sorted(p.name for p in (tmp_path / "one" / "images").iterdir())


def test_torchrun_collects_sae_activations_on_two_processes_into_the_same_store(tmp_path):
    """`torchrun --nproc-per-node 2 -m cadiff sae collect ...`: each rank renders and reads half of every shard,
    rank 0 gathers and writes them; the shards hold the one-process activations, in order."""

    from cadiff.cli import main
    from cadiff.sae import ActivationStore

    tiny_sd("sd1").save_pretrained(tmp_path / "model")
    args = ["sae", "collect", "a red circle", "a blue square", "--model", str(tmp_path / "model"), "-n", "3", "--shard-size", "4", "--hookpoints", "mid_block.attentions.0", "--steps", "2",
            "--at-steps", "first,last"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    two = _torchrun(*args, "--out", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-2000:]
    one, both = ActivationStore(tmp_path / "one"), ActivationStore(tmp_path / "two")
    assert both.num_images() == one.num_images() == 6
    for mine, theirs in zip(both.activations("mid_block.attentions.0", "cond"),
                            one.activations("mid_block.attentions.0", "cond")):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)


def test_torchrun_attacks_and_hardens_an_erased_model_on_two_processes_as_one_does(tmp_path):
    """`torchrun --nproc-per-node 2 -m cadiff attack|harden ...` (the learned token, judged by a function): each rank
    renders its share of the images, every rank learns the same token (a seeded draw), rank 0 writes; the attack's
    numbers and the hardened mask are one process's."""

    from cadiff.cli import main

    import cadiff
    from PIL import Image

    pipe = tiny_sd("sd1")
    pipe.save_pretrained(tmp_path / "model")
    (tmp_path / "circles").mkdir()  # the learned token's concept images (the model has no world to render them)
    for i, image in enumerate(cadiff.generate(pipe, ["a red circle"] * 4, [0, 1, 2, 3], steps=2)):
        Image.fromarray(image).save(tmp_path / "circles" / f"{i}.png")
    judge = tmp_path / "judge.py"
    judge.write_text("import numpy as np\n\ndef bright(images, concept):\n"
                     "    return np.asarray(images).reshape(len(images), -1).mean(1) > 127\n")
    model = ["--model", str(tmp_path / "model")]
    assert main(["erase", "a red circle", "--method", "cad", "--ratio", "0.25", "--scope", "matrix", "--components",
                 "attn", "--seeds", "1", "--steps", "2", "--no-export", *model, "--out", str(tmp_path / "erase")]) == 0
    args = ["attack", str(tmp_path / "erase"), "a red circle", "--attacks", "token", "--preserve",
            "a blue square", "--judge", f"{judge}:bright", "--token-steps", "2", "--token-images", "4",
            "--token-batch", "2", "--token-folder", str(tmp_path / "circles"), "--per-prompt", "2", *model]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    two = _torchrun(*args, "--out", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-2000:]

    def numbers(run):
        result = json.loads((tmp_path / run / "attack.json").read_text())
        return [{k: v for k, v in a.items() if k != "seconds"} for a in result["attacks"]]

    assert numbers("two") == numbers("one")
    hard = ["harden", str(tmp_path / "erase"), "a red circle", "--preserve", "a blue square", "--judge",
            f"{judge}:bright", "--harden-rounds", "1", "--token-steps", "2", "--token-images", "4", "--token-batch", "2",
            "--token-folder", str(tmp_path / "circles"), "--seeds", "1", "--steps", "2", "--no-export", *model]
    assert main([*hard, "--out", str(tmp_path / "hard1")]) == 0
    two = _torchrun(*hard, "--out", str(tmp_path / "hard2"))
    assert two.returncode == 0, two.stderr[-2000:]
    mine, theirs = (json.loads((tmp_path / r / "hardening.json").read_text()) for r in ("hard2", "hard1"))
    assert mine["hardening"] == theirs["hardening"] and mine["zeroed_after"] == theirs["zeroed_after"]
    assert (tmp_path / "hard2" / "mask.safetensors").read_bytes() == (tmp_path / "hard1" / "mask.safetensors").read_bytes()
