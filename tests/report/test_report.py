"""The report page: every command that writes a run folder writes one; it is self-contained, and in a real browser
(headless Chromium) every picture loads, no error is raised and every table has its rows."""

import json
import re
import shutil
import subprocess

import pytest

from cadiff.cli import main
from tiny_pipelines import tiny_sd

JUDGE = ("import numpy as np\ndef judge(images, concept):\n    return np.full(len(images), concept != 'a circle')\n"
         "second = judge\n")
FAST = ["--steps", "2", "--seeds", "1", "--guidance", "4", "--components", "attn", "--scope", "matrix"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
CHECK = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || (e.target && e.target.tagName))), true);
const consoleError = console.error; console.error = (...a) => { window.__errors.push(a.join(' ')); consoleError(...a); };
window.addEventListener('load', () => {
  const images = [...document.images];
  const tables = [...document.querySelectorAll('table')];
  const out = document.createElement('pre'); out.id = 'selfcheck';
  out.textContent = JSON.stringify({images: images.length,
    unloaded: images.filter(i => !(i.complete && i.naturalWidth > 0)).length,
    tables: tables.length, empty: tables.filter(t => !t.tBodies.length || !t.tBodies[0].rows.length).length,
    errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A calibrated erase and a plain one on a tiny pipeline, each with the report its command wrote."""
    root = tmp_path_factory.mktemp("report")
    tiny_sd("sd2").save_pretrained(root / "model")
    (root / "judges.py").write_text(JUDGE)
    common = ["--model", str(root / "model"), "--no-export", *FAST]
    assert main(["erase", "a circle", "--preserve", "a star", "a square", "--judge", f"{root / 'judges.py'}:judge",
                 "--second-judge", f"{root / 'judges.py'}:second", "--goal-target", "0.2", "--goal-keep", "0.8",
                 "--screen-extra", "2", "--confirm-repeats", "2", "--confirm-max-repeats", "2",
                 "--out", str(root / "calibrated"), *common]) == 0  # two judges, 24 images a concept: proven
    assert main(["erase", "a circle", "--method", "cad", "--ratio", "0.1", "--rounds", "2",
                 "--out", str(root / "plain"), *common]) == 0
    return root


def test_every_run_folder_gets_a_self_contained_report(runs, capsys):
    page = (runs / "calibrated" / "report.html").read_text()
    assert "goal met, proven" in page and "Confirmation" in page and "Settings screened" in page
    assert "Provenance" in page and "version of diffusers" in page
    assert re.search(r"<img src=\"data:image/png;base64,", page) and "http" not in page.replace("http-equiv", "")
    assert "<script" not in page
    plain = (runs / "plain" / "report.html").read_text()
    assert "Mask" in plain and "Attribution of a_circle.round2" in plain and "Rounds" not in plain


def test_several_runs_side_by_side_and_no_overwrite(runs, tmp_path, capsys):
    out = tmp_path / "both.html"
    assert main(["report", str(runs / "calibrated"), str(runs / "plain"), "--out", str(out)]) == 0
    page = out.read_text()
    assert "Side by side" in page and page.count("<h2>") == 3
    assert main(["report", str(runs / "calibrated"), "--out", str(out)]) == 2  # exists: refused
    assert "exists" in capsys.readouterr().err
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "x.html")]) == 2
    assert "not a run folder" in capsys.readouterr().err


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine: install Debian's chromium (`apt-get "
                                              "install chromium`; .ci/run does) to check the report in a browser")
@pytest.mark.parametrize("name", ["calibrated", "plain"])
def test_the_report_renders_in_a_real_browser(runs, tmp_path, name):
    checked = tmp_path / "checked.html"
    checked.write_text((runs / name / "report.html").read_text().replace("</head>", CHECK + "</head>", 1))
    browser = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*browser, "--virtual-time-budget=5000", "--dump-dom", checked.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'<pre id="selfcheck">(.*?)</pre>', dom, re.S)
    assert found, f"the page did not load in Chromium: {dom[-500:]}"
    check = json.loads(found.group(1).replace("&quot;", '"'))
    assert check["images"] >= 2 and check["unloaded"] == 0
    assert check["tables"] >= 3 and check["empty"] == 0
    assert check["errors"] == []
    shot = tmp_path / "report.png"
    subprocess.run([*browser, f"--screenshot={shot}", "--window-size=1100,1400", (runs / name / "report.html").as_uri()],
                   capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_an_evaluation_report_shows_per_concept_intervals(tmp_path):
    from cadiff.report.html import write_report

    run = tmp_path / "eval"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"command": "evaluate", "settings": {}}))
    (run / "metrics.json").write_text(json.dumps({"metrics": {"shapes": {"per_concept": {
        "circle": {"target": 0.5, "target_ci95": [0.1, 0.9], "n_target": 2}}}}}))
    page = write_report([run], tmp_path / "r.html").read_text()
    assert "target_ci95" in page and "0.1–0.9" in page and "n_target" in page
