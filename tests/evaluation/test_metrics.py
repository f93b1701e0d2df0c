"""Metric adapters on synthetic images and tiny random networks, through the code paths real weights use."""

import numpy as np
import pytest
import torch

from cadiff.evaluation import PromptSet, load_prompts
from cadiff.evaluation.metrics import (FID, ClipScore, MissingDependencyError, NudeNetMetric, ObjectAccuracy,
                                       ShapesAccuracy, build_metrics, erase_keep)
from cadiff.evaluation.metrics.base import ImageSource, hf_folder, require


def images(n, seed=0, size=32):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_shapes_accuracy_reads_rendered_images_and_reports_erase_keep(tiny_evaluator):
    from cadiff.worlds.shapes import render

    rows = load_prompts("shapes:red,solid").rows
    batch = render([r.labels["shape"] for r in rows], ["red"] * len(rows), ["solid"] * len(rows))
    metric = ShapesAccuracy(tiny_evaluator)
    columns = metric.score(batch.images, rows)
    predicted = metric.evaluator.predict(batch.images)
    assert columns["shapes_shape"] == predicted["shape"] and columns["label_shape"] == [r.labels["shape"] for r in rows]
    table = [{"index": r.index, **{k: v[i] for k, v in columns.items()}} for i, r in enumerate(rows)]
    summary = metric.summarize(table, ImageSource("."))
    hits = [p == r.labels["shape"] for p, r in zip(predicted["shape"], rows)]
    assert summary["accuracy"]["shape"] == pytest.approx(np.mean(hits), abs=1e-4)
    assert summary["accuracy"]["colour"] == pytest.approx(np.mean([c == "red" for c in predicted["colour"]]), abs=1e-4)
    assert set(summary["per_concept"]) == {r.labels["shape"] for r in rows} | {"red", "solid"}


def test_erase_keep_splits_target_and_other_rows():
    table = [{"label_shape": s, "shapes_shape": p} for s, p in
             [("circle", "square"), ("circle", "circle"), ("star", "star"), ("star", "star"), ("heart", "star")]]
    from cadiff.evaluation.stats import wilson

    assert erase_keep(table, "circle") == {"attribute": "shape", "target": 0.5, "others": round(2 / 3, 4),
                                           "n_target": 2, "n_others": 3, "target_ci95": list(wilson(1, 2)),
                                           "others_ci95": list(wilson(2, 3))}


nudenet_installed = pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("nudenet") is None,
    reason="nudenet not installed: pip install 'cadiff[nudity]' (make test installs it)")
torchmetrics_installed = pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("torchmetrics") is None,
    reason="torchmetrics not installed: pip install 'cadiff[metrics]' (make test installs it)")


@nudenet_installed
def test_nudenet_detector_from_the_wheel_runs_offline():
    metric = NudeNetMetric()
    rows = PromptSet.from_prompts(["a", "b"]).rows
    flat = np.full((2, 64, 64, 3), 200, np.uint8)
    out = metric.score(flat, rows)
    assert out == {"nudenet_nude": [False, False], "nudenet_classes": ["", ""]}
    info = metric.info()
    assert info["version"] == "3.4.2" and info["settings"]["threshold"] == 0.5 and len(info["settings"]["classes"]) == 9


@nudenet_installed
def test_nudenet_counts_only_exposed_classes_above_threshold(monkeypatch):
    metric = NudeNetMetric()
    fake = [[{"class": "FEMALE_BREAST_EXPOSED", "score": 0.7}, {"class": "FACE_FEMALE", "score": 0.99}],
            [{"class": "BUTTOCKS_EXPOSED", "score": 0.5}],
            [{"class": "FEET_COVERED", "score": 0.9}, {"class": "ANUS_EXPOSED", "score": 0.51}]]
    monkeypatch.setattr(metric, "detect", lambda imgs: fake)
    out = metric.score(images(3), PromptSet.from_prompts(["a", "b", "c"]).rows)
    assert out["nudenet_nude"] == [True, False, True]
    assert out["nudenet_classes"] == ["FEMALE_BREAST_EXPOSED", "", "ANUS_EXPOSED"]
    table = [{"nudenet_nude": n, "nudenet_classes": c} for n, c in zip(out["nudenet_nude"], out["nudenet_classes"])]
    summary = metric.summarize(table, ImageSource("."))
    assert summary["nude_images"] == 2 and summary["per_class"]["ANUS_EXPOSED"] == 1


def test_clip_score_on_a_tiny_random_clip(tiny_clip):
    metric = ClipScore(tiny_clip)
    rows = PromptSet.from_prompts(["a red circle", "a blue star", "a red circle"]).rows
    pics = images(3)
    pics[2] = pics[0]
    scores = metric.score(pics, rows)["clip_score"]
    assert len(scores) == 3 and all(0 <= s <= 100 for s in scores)
    assert scores[0] == pytest.approx(scores[2], abs=1e-3)  # same image, same prompt, same score
    summary = metric.summarize([{"clip_score": s} for s in scores], ImageSource("."))
    assert summary["mean"] == pytest.approx(np.mean(scores), abs=1e-3)
    assert metric.info()["settings"]["weights"] == str(tiny_clip)


@pytest.fixture(scope="module")
def tiny_resnet(tmp_path_factory):
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetForImageClassification

    torch.manual_seed(0)
    labels = {0: "tench, Tinca tinca", 1: "church, church building", 2: "parachute, chute"}
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
                          id2label=labels, label2id={v: k for k, v in labels.items()})
    path = tmp_path_factory.mktemp("resnet") / "resnet"
    ResNetForImageClassification(config).save_pretrained(path)
    ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=1.0).save_pretrained(path)
    return path


def test_object_accuracy_on_a_tiny_random_resnet(tiny_resnet):
    metric = ObjectAccuracy(tiny_resnet)
    rows = PromptSet.from_prompts(["x"] * 6, classes=["tench", "church", "parachute", "tench", "chute", "dog"]).rows
    out = metric.score(images(6), rows)
    assert all(p in metric.model.config.id2label.values() for p in out["object_pred"])
    for r, pred, ok in zip(rows, out["object_pred"], out["object_correct"]):
        assert ok == (r.cls in [n.strip().lower() for n in pred.split(",")])
    table = [{"class": r.cls, "object_correct": ok} for r, ok in zip(rows, out["object_correct"])]
    summary = metric.summarize(table, ImageSource("."))
    assert summary["accuracy"]["tench"] == np.mean([out["object_correct"][0], out["object_correct"][3]])


class TinyFeatures(torch.nn.Module):
    """A random convolutional feature extractor standing in for Inception (uint8 in, features out)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 6, 3)

    def forward(self, x):
        return self.conv(x.float() / 255).mean((2, 3))


@torchmetrics_installed
def test_fid_on_a_tiny_feature_network(tmp_path):
    from PIL import Image

    ref = tmp_path / "real"
    ref.mkdir()
    for i, img in enumerate(images(40, seed=1)):
        Image.fromarray(img).save(ref / f"{i}.png")
    gen = tmp_path / "gen"
    gen.mkdir()
    dark = (images(40, seed=2) // 3).astype(np.uint8)
    for i, img in enumerate(np.concatenate([images(40, seed=3), dark])):
        Image.fromarray(img).save(gen / f"{i:05d}.png")
    metric = FID(ref, feature_extractor=TinyFeatures())
    same = metric.summarize([{"index": i} for i in range(40)], ImageSource(gen))
    shifted = metric.summarize([{"index": i} for i in range(40, 80)], ImageSource(gen))
    assert 0 <= same["fid"] < shifted["fid"] and same["n_reference"] == 40


@torchmetrics_installed
def test_missing_weights_and_dependencies_say_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="hf download nobody/no-such-clip"):
        hf_folder("nobody/no-such-clip", "CLIP", "--clip-weights")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05"):
        FID(tmp_path)
    with pytest.raises(FileNotFoundError, match="alexnet-owt-7be5be79.pth there or pass --lpips-weights"):
        build_metrics(["lpips"], {"lpips_reference": tmp_path})
    with pytest.raises(MissingDependencyError, match=r"pip install 'cadiff\[metrics\]'"):
        require("no_such_module_for_cadiff", "metrics")
    with pytest.raises(ValueError, match="--fid-reference"):
        build_metrics(["fid"])
    with pytest.raises(ValueError, match="unknown metric 'iou'"):
        build_metrics(["iou"])


def _lpips_files(tmp_path, net):
    """A random LPIPS network saved as a torchvision-layout backbone file and an LPIPS v0.1 heads file."""
    from cadiff.evaluation.metrics.lpips import LPIPSNetwork

    torch.manual_seed(0)
    model = LPIPSNetwork(net)
    for head in model.heads:
        head.weight.uniform_(0, 1)  # LPIPS heads are non-negative
    backbone, heads = tmp_path / f"{net}-backbone.pth", tmp_path / f"{net}-heads.pth"
    state = {f"features.{k}": v for k, v in model.features.state_dict().items()}
    torch.save({**state, "classifier.1.weight": torch.zeros(4, 4)}, backbone)
    torch.save({f"lin{k}.model.1.weight": h.weight for k, h in enumerate(model.heads)}, heads)
    return model, backbone, heads


def test_lpips_reads_weight_files_and_agrees_with_torchmetrics(tmp_path, monkeypatch):
    """cadiff's LPIPS (no torchvision) loads backbone and heads from files and gives torchmetrics' LPIPS values for
    the same weights; torchmetrics' torchvision lookup is replaced by the same backbone layers."""
    import copy

    from PIL import Image
    from torchmetrics.functional.image import lpips as reference_lpips

    from cadiff.evaluation.metrics import LPIPS

    model, backbone, heads = _lpips_files(tmp_path, "alex")
    ref = tmp_path / "base"
    (ref / "images").mkdir(parents=True)
    base = images(3, size=32)
    for i, img in enumerate(base):
        Image.fromarray(img).save(ref / "images" / f"{i:05d}.png")
    metric = LPIPS(ref, net="alex", weights=backbone, heads=heads)
    other = base.copy()
    other[1] = 255 - other[1]
    other[2] = np.clip(other[2].astype(int) + 8, 0, 255).astype(np.uint8)
    values = metric.score(other, PromptSet.from_prompts(["a", "b", "c"]).rows)["lpips"]
    assert values[0] == pytest.approx(0, abs=1e-6)
    assert values[1] > values[2] > 0

    monkeypatch.setattr(reference_lpips, "_get_tv_model_features",
                        lambda name, pretrained=False: copy.deepcopy(model.features))
    expected_net = reference_lpips._LPIPS(pretrained=True, net="alex", model_path=str(heads))
    a, b = (torch.nn.functional.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255, size=(64, 64))
            for x in (other, base))
    expected = expected_net(a, b, normalize=True).reshape(-1)
    assert values == pytest.approx(expected.tolist(), abs=2e-5)
    assert metric.info()["settings"]["backbone"] == str(backbone)


def test_lpips_vgg_and_bad_weight_files(tmp_path):
    from cadiff.evaluation.metrics.lpips import LPIPSNetwork, backbone_weights

    model, backbone, heads = _lpips_files(tmp_path, "vgg")
    loaded = LPIPSNetwork.from_files("vgg", backbone, heads)
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    assert torch.allclose(loaded(x, y), model(x, y)) and (loaded(x, y) > 0).all()
    with pytest.raises(ValueError, match="not a torchvision alex weights file"):
        LPIPSNetwork.from_files("alex", backbone, heads)
    _, alex_backbone, _ = _lpips_files(tmp_path, "alex")
    with pytest.raises(ValueError, match="not an LPIPS v0.1 heads file for 'alex'"):
        LPIPSNetwork.from_files("alex", alex_backbone, heads)
    with pytest.raises(ValueError, match="unknown LPIPS network 'squeeze'"):
        backbone_weights("squeeze", None)
    with pytest.raises(FileNotFoundError, match="nothing.pth not found"):
        backbone_weights("alex", tmp_path / "nothing.pth")
    from cadiff.evaluation.metrics import LPIPS

    with pytest.raises(FileNotFoundError, match="LPIPS heads file .*no-heads.pth not found"):
        LPIPS(tmp_path, net="alex", weights=alex_backbone, heads=tmp_path / "no-heads.pth")
