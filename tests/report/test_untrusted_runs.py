"""Run folders from someone else: `cadiff report` shows every value read from their files as text (a `<script>` in
`n_positive`, an `onerror` in `edit.zeroed`, a picture's file name), never as markup, and checks it in headless
Chromium; a grid is captioned by the command that drew it (a generate run has no before/after)."""

import html
import json
import re
import shutil
import subprocess

import pytest
from PIL import Image

from cadiff.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
SCRIPT = "<script>window.__pwned = 1; document.title = 'pwned'</script>"
IMG = "<img src=x onerror=\"window.__pwned = 2; document.title = 'pwned'\">"
CHECK = """<script>
window.addEventListener('load', () => {
  const out = document.createElement('pre'); out.id = 'selfcheck';
  out.textContent = JSON.stringify({title: document.title, pwned: window.__pwned || 0,
    scripts: document.scripts.length, handlers: document.querySelectorAll('[onerror]').length,
    images: document.images.length, text: document.body.innerText.includes(%s)});
  document.body.appendChild(out);
});
</script>""" % json.dumps(SCRIPT).replace("</", "<\\/")


def _certificate() -> dict:
    """certificate.json as cadiff writes it, a planted value in every field the page shows."""
    concept = {"before": {"accuracy": SCRIPT}, "after": {"accuracy": IMG, "n": SCRIPT, "ci95": [IMG, 1]}, "kept": IMG}
    return {"passed": SCRIPT, "goal": {"target": SCRIPT, "keep": IMG},
            "probes": {"confirm": {"images": SCRIPT, "seeds": [IMG, SCRIPT]}}, "judge": {"judge": IMG},
            "chosen": {"label": SCRIPT, "zeroed": IMG}, "misses": [SCRIPT], "targets": [SCRIPT],
            "confirmation": {"target_max": SCRIPT, "kept_min": IMG, "concepts": {SCRIPT: concept, IMG: concept}},
            "tried": [{"order": IMG, "label": SCRIPT, "target_max": IMG, "kept_min": SCRIPT, "kept_min_concept": IMG,
                       "zeroed": SCRIPT}], "seconds": {SCRIPT: IMG}}


def _write(folder, files: dict) -> None:
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_text(json.dumps(content))


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A report of three crafted run folders (a calibrated erase, a plain edit in rounds, an attack)."""
    root = tmp_path_factory.mktemp("untrusted")
    run = {"command": SCRIPT, "argv": [IMG], "started": SCRIPT, "seconds": IMG, "model": IMG,
           "versions": {SCRIPT: IMG}, "settings": {"concepts": [SCRIPT, IMG], "method": IMG},
           "edit": {"zeroed": IMG, "method": SCRIPT, "model_fingerprint": SCRIPT, "per_parameter": {SCRIPT: IMG, IMG: 3}}}
    summary = {"n_positive": SCRIPT, "n_negative": IMG, "n": SCRIPT, "concentration": IMG,
               "layers": {SCRIPT: {"mass_positive": IMG, IMG: SCRIPT}, IMG: {"mass_positive": 2}},
               "heads": {SCRIPT: IMG, IMG: {"mass_positive": SCRIPT}}}
    _write(root / "calibrated", {"run.json": run, "certificate.json": _certificate(), f"{IMG}.summary.json": summary})
    Image.new("RGB", (4, 4), "red").save(root / "calibrated" / f"{IMG}.png")
    metrics = {"before": {SCRIPT: IMG}, "after": {SCRIPT: SCRIPT}, "target_before": SCRIPT, "target_after": IMG,
               "kept_min": SCRIPT, "kept_min_concept": IMG, "n_images": SCRIPT, SCRIPT: IMG,
               "rounds": [{"round": IMG, "zeroed": SCRIPT, "target_after": IMG, "kept_min": SCRIPT,
                           "kept_min_concept": IMG, "mask": SCRIPT}]}
    _write(root / "plain", {"run.json": run, "metrics.json": metrics})
    attack = {"concept": SCRIPT, "judge": {"judge": IMG}, "attacks": [
        {"attack": SCRIPT, "edited": {"accuracy": IMG, "n": SCRIPT, "ci95": [IMG]}, "original": {"accuracy": SCRIPT},
         "references": {IMG: {"accuracy": SCRIPT}}, "keep": {SCRIPT: IMG, IMG: 0.5}, "seconds": IMG}]}
    _write(root / "attack", {"run.json": run, "metrics.json": attack})
    out = root / "report.html"
    assert main(["report", *(str(root / n) for n in ("calibrated", "plain", "attack")), "--out", str(out)]) == 0
    return out


def test_planted_markup_appears_as_text_only(planted):
    page = planted.read_text()
    assert "<script" not in page and "<img src=x" not in page and 'onerror="' not in page
    assert "window.__pwned" in page  # there, escaped
    assert html.escape(SCRIPT) in page and html.escape(IMG) in page
    assert page.count("<img ") == 1 and "goal not met" in page  # the one real picture; a string is no verdict


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine: install Debian's chromium (`apt-get "
                                              "install chromium`; .ci/run does) to check the report in a browser")
def test_nothing_planted_runs_in_a_real_browser(planted, tmp_path):
    checked = tmp_path / "checked.html"
    checked.write_text(planted.read_text().replace("</head>", CHECK + "</head>", 1))
    browser = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*browser, "--virtual-time-budget=5000", "--dump-dom", checked.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'<pre id="selfcheck">(.*?)</pre>', dom, re.S)
    assert found, f"the page did not load in Chromium: {dom[-500:]}"
    check = json.loads(html.unescape(found.group(1)))
    assert check["pwned"] == 0 and check["title"].startswith("cadiff report") and check["title"] != "pwned"
    assert check["scripts"] == 1 and check["handlers"] == 0 and check["images"] == 1  # only the check's own script
    assert check["text"]  # the planted script shows as text


def test_a_broken_run_file_is_one_line_naming_the_folder(tmp_path, capsys):
    _write(tmp_path / "run", {"run.json": {"command": "erase"}, "certificate.json": {"passed": True}})
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "run") in err and not (tmp_path / "r.html").exists()
    (tmp_path / "run" / "metrics.json").write_text("{not json")
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "r.html")]) == 2
    assert "metrics.json" in capsys.readouterr().err


def test_a_generate_run_is_not_captioned_before_and_after(tmp_path, capsys):
    out = tmp_path / "gen"
    assert main(["generate", "a circle", "-n", "1", "--steps", "2", "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    assert captions and not any("before" in c or "after" in c for c in captions)
    assert "one row per prompt" in captions[0]
