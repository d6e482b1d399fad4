"""visionnets.viz.report: figures at the end of a run, and report.html checked in a real browser."""

import base64
import json
import os
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from visionnets.data import load_dataset
from visionnets.data.base import Dataset, Split
from visionnets.viz.report import finish_run, write_report

RECIPE = {"name": "toy", "model": {"name": "convnet", "stages": [{"channels": 4}]}, "seed": 0,
          "path": Path("/x"), "sizes": (1, 2)}


def history(epochs=4, regression=False):
    out = []
    for e in range(1, epochs + 1):
        rec = {"epoch": e, "step": 10 * e, "lr": 0.1 / e, "seconds": 0.5, "examples_per_s": 1000.0}
        for s, f in (("train", 1.0), ("val", 1.1), ("test", 1.2)):
            rec[f"{s}_loss"] = f / e
            rec[f"{s}_error"] = None if regression else f / (2 * e)
        out.append(rec)
    return out


class Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])


def parse(page: Path) -> Images:
    p = Images()
    p.feed(page.read_text(encoding="utf-8"))
    return p


def convnet():
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(128, 10))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", None, val_fraction=0.1, seed=0)


def assert_self_contained(page: Path, figures: list[str]):
    text = page.read_text(encoding="utf-8")
    html = parse(page)
    assert len(html.srcs) == len(figures)
    for name in figures:                                   # every image embedded, byte for byte
        data = base64.b64encode((page.parent / "figures" / name).read_bytes()).decode()
        assert f"data:image/png;base64,{data}" in html.srcs
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", text)
    assert "<link" not in text and "<script" not in text and "@import" not in text
    assert not [p for p in page.parent.rglob(".*.tmp")]    # atomic writes left no temporaries


def test_finish_run_classification(tmp_path, digits):
    torch.manual_seed(0)
    net = convnet()
    page = finish_run(tmp_path, net, digits, history(), RECIPE)
    assert page == tmp_path / "report.html"
    figures = ["curves.png", "filters.png", "confusion.png", "worst.png"]
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == sorted(figures)
    assert_self_contained(page, figures)
    text = page.read_text()
    assert "convnet" in text and "path: /x" in text        # the recipe, as YAML
    assert text.count("<tr>") == 1 + 4                      # header + one row per epoch
    assert "best val error 13.75% at epoch 4" in text
    assert net.training                                     # the model's mode is left as it was


def test_finish_run_is_fast_on_the_digits_convnet(tmp_path, digits):
    """< 3 s of CPU on the 8x8 digits convnet (the Trainer calls it after every run);
    CPU time, so a busy machine does not make it flaky."""
    net = convnet()
    finish_run(tmp_path / "warm", net, digits, history(), RECIPE)      # fonts, caches
    cpu, wall = time.process_time(), time.perf_counter()
    finish_run(tmp_path / "run", net, digits, history(20), RECIPE)
    cpu = time.process_time() - cpu
    print(f"finish_run on the digits convnet: {cpu:.2f} s CPU, {time.perf_counter() - wall:.2f} s wall")
    assert cpu < 3.0


def test_finish_run_regression_draws_the_fit(tmp_path):
    ds = load_dataset("cosine", None, val_fraction=0.1, seed=0, n_train=200, n_test=50)
    net = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))
    page = finish_run(tmp_path, net, ds, history(3, regression=True), RECIPE)
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["curves.png", "fit.png"]
    assert_self_contained(page, ["curves.png", "fit.png"])
    assert "&mdash;" in page.read_text()                   # errors are None for regression


def test_finish_run_on_an_autoencoder_notes_what_is_skipped(tmp_path):
    x, y = torch.rand(30, 1, 8, 8), torch.arange(30) % 3
    ds = Dataset("toy", Split(x, y), None, Split(x, y), (1, 8, 8), num_classes=3)
    ae = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Sigmoid(), nn.Linear(16, 64))
    page = finish_run(tmp_path, ae, ds, [], RECIPE)
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["filters.png"]
    text = page.read_text()
    assert "no confusion matrix" in text and "no learning curves" in text and "No epochs" in text


def test_write_report_rebuilds_from_the_files(tmp_path, digits):
    finish_run(tmp_path, convnet(), digits, history(), RECIPE)
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump({"name": "from-file", "seed": 3}))
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in history(2)) + "\n")
    shutil.copy(tmp_path / "figures" / "filters.png", tmp_path / "figures" / "top_conv_3.png")
    page = write_report(tmp_path)
    text = page.read_text()
    assert "from-file" in text and text.count("<tr>") == 1 + 2
    assert_self_contained(page, ["curves.png", "filters.png", "confusion.png", "worst.png", "top_conv_3.png"])
    assert text.index("Learning curves") < text.index("top conv 3")   # standard figures first


def test_metrics_table_shows_the_last_rows_of_a_long_run(tmp_path):
    page = write_report(tmp_path, {"name": "long"}, history(150))
    text = page.read_text()
    assert text.count("<tr>") == 1 + 100 and "last 100 of 150 epochs" in text


# --- the page in a real browser ----------------------------------------------------------------

def chromium() -> str:
    for name in (os.environ.get("VISIONNETS_CHROMIUM"), "/usr/bin/chromium", "chromium",
                 "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    reason = "Chromium not found (/usr/bin/chromium; install with: apt-get install -y chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason + " (CI=true: the browser check must run)")
    print(f"SKIP: {reason}")
    pytest.skip(reason)


CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = Array.from(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images', ok + '/' + imgs.length);
});
</script></body>"""


def browse(exe: str, page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={tmp / 'profile'}"]
    return subprocess.run([exe, *flags, *args, page.as_uri()], capture_output=True, text=True,
                          timeout=90, check=True)


def test_report_renders_in_a_real_browser(tmp_path, digits):
    from PIL import Image

    exe = chromium()
    run = tmp_path / "run"
    page = finish_run(run, convnet(), digits, history(), RECIPE)
    n = len(list((run / "figures").glob("*.png")))
    probe = run / "probe.html"                                # the page plus a script counting images
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", CHECK), encoding="utf-8")
    dom = browse(exe, probe, tmp_path, "--virtual-time-budget=10000", "--dump-dom").stdout
    assert f'data-images="{n}/{n}"' in dom, dom[:300]
    broken = run / "broken.html"                              # the probe does see a broken image
    broken.write_text(probe.read_text().replace("base64,iVBOR", "base64,AAAA", 1))
    dom = browse(exe, broken, tmp_path, "--virtual-time-budget=10000", "--dump-dom").stdout
    assert f'data-images="{n - 1}/{n}"' in dom
    shot = tmp_path / "shot.png"
    browse(exe, page, tmp_path, "--window-size=1200,2400", f"--screenshot={shot}")
    img = Image.open(shot).convert("RGB")
    assert img.size == (1200, 2400)
    colours = img.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50         # text, plots, filters: not blank
    assert max(c for c, _ in colours) < 0.98 * img.size[0] * img.size[1]


def test_filters_of_a_wide_first_layer_stay_small(tmp_path):
    """An MLP's 800 first-layer filters: the report draws 100, and noise-like weights (the worst
    case for PNG compression) still give a file under 300 KB."""
    x, y = torch.rand(20, 1, 28, 28), torch.arange(20) % 10
    ds = Dataset("toy", Split(x, y), None, Split(x, y), (1, 28, 28), num_classes=10)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 800), nn.ReLU(), nn.Linear(800, 10))
    finish_run(tmp_path, mlp, ds, history(2), RECIPE)
    assert (tmp_path / "figures" / "filters.png").stat().st_size < 300_000
