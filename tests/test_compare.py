"""The comparison: rows measured per method, the tables, the files, the command line."""

import json
import os

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from threadpoolctl import threadpool_limits

from visionnets.baselines.compare import Row, compare, parse_options, row_from_run
from visionnets.baselines.table import (NOT_MEASURED, PROPERTIES, TABLE_COLUMNS, family, properties,
                                        render_properties, render_table, report)
from visionnets.data.base import Dataset, Split
from visionnets.errors import ConfigError

CHEAP = {"boosted_trees": {"max_iter": 5}, "boosted_stumps": {"n_rounds": 20}, "boosted_stumps_samme": {"n_estimators": 20},
         "haar_stumps": {"n_features": 100, "n_rounds": 20}, "product_stumps": {"n_rounds": 10},
         "rbm_logistic": {"n_components": 32, "n_iter": 5, "batch_size": 10, "C": 1000.0}}


@pytest.fixture(autouse=True)
def _one_thread():
    with threadpool_limits(1):
        yield


def _digits(name="digits"):
    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(d.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    tr, te = order[:800], order[800:1100]
    return Dataset(name, Split(x[tr], y[tr]), None, Split(x[te], y[te]), (1, 8, 8), 10)


@pytest.fixture(scope="module")
def all_rows():
    with threadpool_limits(1):
        return compare(_digits(), options=CHEAP, n_labelled=200)


def test_rows_are_measured(all_rows):
    assert [r.method for r in all_rows] == ["boosted_stumps", "boosted_stumps_samme", "boosted_trees", "haar_stumps",
                                           "knn", "linear", "linear_svm", "product_stumps", "rbm_logistic", "svm_rbf"]
    stumps = all_rows[0]
    assert stumps.extra["rounds"] == 20 == len(stumps.extra["error_by_round"]) and stumps.extra["seconds_per_round"] > 0
    assert stumps.extra["error_by_round"][-1] == pytest.approx(stumps.error, abs=1e-3)
    haar = next(r for r in all_rows if r.method == "haar_stumps")
    assert haar.extra["rounds"] == 20 and haar.extra["error_by_round"][-1] == pytest.approx(haar.error, abs=1e-3)
    for r in all_rows:
        assert r.kind == "baseline" and r.n_train == 800 and r.n_test == 300
        assert 0 <= r.error < 50 and r.train_seconds > 0 and r.test_seconds_per_1000 > 0
        assert r.n_parameters > 0
        assert r.tutorial_error is None             # the tutorial's numbers are for MNIST only
    knn = next(r for r in all_rows if r.method == "knn")
    assert knn.error < 5


def test_error_matches_a_direct_fit():
    from sklearn.neighbors import KNeighborsClassifier

    ds = _digits()
    [row] = compare(ds, methods=["knn"])
    X, Xt = ds.train.x.reshape(800, -1).numpy(), ds.test.x.reshape(300, -1).numpy()
    pred = KNeighborsClassifier(3).fit(X, ds.train.y.numpy()).predict(Xt)
    assert row.error == pytest.approx(100 * np.mean(pred != ds.test.y.numpy()))


def test_methods_are_selected_in_order_and_mnist_rows_carry_the_tutorial():
    rows = compare(_digits("mnist"), methods=["linear", "knn"])
    assert [(r.method, r.tutorial_error, r.tutorial_name) for r in rows] == [
        ("linear", 12.0, "Linear Classifier"), ("knn", 5.0, "K-NN")]


def test_unknown_method_names_it():
    with pytest.raises(ConfigError, match="unknown baseline 'nope'"):
        compare(_digits(), methods=["knn", "nope"])


def test_options_and_caps():
    rows = compare(_digits(), methods=["knn"], options=parse_options(["knn.k=1"]),
                   max_train={"knn": 100}, subsample=500)
    assert rows[0].params == {"k": 1} and rows[0].n_train == 100
    assert "trained on 100 of 500" in rows[0].notes
    assert rows[0].protocol.startswith("100 of 500 training images;")
    with pytest.raises(ConfigError, match="options.svm_rbf: not among the selected methods"):
        compare(_digits(), methods=["knn"], options={"svm_rbf": {"C": 1.0}})
    with pytest.raises(ConfigError, match="METHOD.KEY=VALUE"):
        parse_options(["k=1"])
    with pytest.raises(ConfigError, match="unknown baseline 'knm'"):
        parse_options(["knm.k=1"])


def test_table_renders_with_the_columns(all_rows):
    lines = render_table(all_rows).splitlines()
    assert lines[0] == "| " + " | ".join(TABLE_COLUMNS) + " |"
    assert TABLE_COLUMNS[1:6] == ["tutorial error (%)", "measured error (%)", "training time (s)",
                                  "test time per 1,000 images (ms)", "parameters"]
    assert len(lines) == 2 + len(all_rows)
    for line, row in zip(lines[2:], all_rows):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == len(TABLE_COLUMNS)
        assert cells[0] == row.label and cells[1] == "—"
        assert float(cells[2]) == pytest.approx(row.error, abs=0.005)
        assert float(cells[4]) == pytest.approx(1000 * row.test_seconds_per_1000, abs=0.05)


def test_properties_table(all_rows):
    props = properties(all_rows)
    assert list(props) == ["Boosting", "Probab. models", "SVM", "k-NN", "Linear"]
    for fam, cells in props.items():
        assert list(cells) == PROPERTIES
        assert cells["Fast training"].endswith("[measured]")
        assert cells["Fast at test time"].endswith("[measured]")
        assert cells["Easy to parallelize"] == NOT_MEASURED      # compare(parallel=N) measures it
    # probabilities where the method has them (k-NN: vote fractions), "scores only" elsewhere
    unc = {r.method: r.extra.get("uncertainty") for r in all_rows}
    assert {m for m, u in unc.items() if u is None} == {"boosted_stumps", "haar_stumps", "product_stumps",
                                                       "linear_svm", "svm_rbf"}
    for m, u in unc.items():
        if u is not None:
            row = next(r for r in all_rows if r.method == m)
            assert u["accuracy"] == pytest.approx(100 - row.error) and u["nll"] > 0 and 0 <= u["ece"] <= 100
    assert props["SVM"]["Models uncertainty"].startswith("no (a margin") and "[by construction]" in props["SVM"]["Models uncertainty"]
    assert props["k-NN"]["Models uncertainty"] == (f"knn: test NLL {unc['knn']['nll']:.3g} nats, ECE "
                                                   f"{unc['knn']['ece']:.2f} % [measured]")
    boosting = props["Boosting"]["Models uncertainty"]
    assert "(boosted_stumps_samme, boosted_trees)" in boosting and boosting.endswith(
        "; boosted_stumps, haar_stumps, product_stumps: scores, not probabilities [measured]")
    assert "linear_svm: scores, not probabilities" in props["Linear"]["Models uncertainty"]
    for r in all_rows:
        assert r.protocol == "all 800 training images; fixed settings, no validation; the final model"
    rbm = next(r for r in all_rows if r.method == "rbm_logistic")
    gain = rbm.extra["unlabelled_gain"]
    assert gain["n_labelled"] == 200 and gain["n_unlabelled"] == 800
    assert gain["gain"] == pytest.approx(gain["error_pixels"] - gain["error_rbm_features"])
    assert f"{gain['gain']:+.1f} points" in props["Probab. models"]["Leverage unlab. data"]
    text = render_properties(props).splitlines()
    assert text[0] == "| property | Boosting | Probab. models | SVM | k-NN | Linear |"
    assert len(text) == 2 + len(PROPERTIES)


def test_report_writes_json_and_png(all_rows, tmp_path):
    tables = report(all_rows, tmp_path, stem="c", meta={"dataset": "digits"})
    assert tables.startswith(render_table(all_rows))
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["dataset"] == "digits" and data["machine"]["cpu_count"] >= 1
    assert [r["method"] for r in data["rows"]] == [r.method for r in all_rows]
    assert data["rows"][0]["error"] == all_rows[0].error
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "c_rounds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"    # the boosting curve
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "c.png", "c_rounds.png"]   # no temp files left
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "c.json").stat().st_mode & 0o777 == 0o666 & ~umask     # not mkstemp's 0600


@pytest.mark.slow
def test_rows_from_a_run_directory(tmp_path):
    from visionnets import api

    result = api.train("digits_convnet", ["train.epochs=1"], out=tmp_path / "run", progress=False,
                       figures=False)
    row = row_from_run(result.run_dir, "digits", repeats=2)
    assert row.extra["test_time_repeats"] == 2
    run = api.load_run(result.run_dir)
    assert row.kind == "net" and row.method == "digits_convnet"
    assert row.error == pytest.approx(100 * api.evaluate(run, "test")["error"])
    assert row.error == pytest.approx(100 * result.final["test_error"])
    assert row.n_parameters == sum(p.numel() for p in run.model.parameters())
    assert row.train_seconds == pytest.approx(result.final["train_seconds_total"])
    assert row.test_seconds_per_1000 > 0 and row.n_test == len(run.dataset.test)
    # a softmax net models uncertainty: its probabilities' calibration, from the tested weights
    from visionnets.baselines.compare import calibration, net_probabilities

    probs = net_probabilities(run)
    assert probs.shape == (len(run.dataset.test), 10) and torch.allclose(probs.sum(1), torch.ones(len(probs)))
    assert row.extra["uncertainty"] == calibration(probs.numpy(), run.dataset.test.y.numpy())
    assert row.extra["uncertainty"]["accuracy"] == pytest.approx(100 - row.error, abs=1e-6)
    n_val = len(run.dataset.val)
    assert row.protocol == (f"{len(run.dataset.train):,} training images, {n_val:,} held out for validation; "
                            "the best-validation epoch (1 of 1)")
    with pytest.raises(ConfigError, match="trained on 'digits'; this table is for 'mnist'"):
        row_from_run(result.run_dir, "mnist")
    rows = compare("digits", methods=["knn"], runs=[result.run_dir])
    assert [r.kind for r in rows] == ["baseline", "net"]


def test_command_line(tmp_path, capsys):
    import argparse

    from visionnets.commands import compare as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["digits", "--methods", "knn", "linear", "--out", str(tmp_path),
                              "--nets", "none", "--max-train", "knn=300", "--parallel", "200"])
    assert command.run(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("| " + " | ".join(TABLE_COLUMNS))
    assert "| property | k-NN | Linear |" in out
    rows = json.loads((tmp_path / "compare_digits.json").read_text())["rows"]
    assert [(r["method"], r["n_train"]) for r in rows] == [("knn", 300), ("linear", 1437)]
    assert [r["extra"]["parallel"]["n_train"] for r in rows] == [200, 200]
    assert (tmp_path / "compare_digits.png").is_file()
    with pytest.raises(ConfigError, match="--max-train 'knn'"):
        command.run(parser.parse_args(["digits", "--max-train", "knn"]))


def test_cli_reports_unknown_method(tmp_path, capsys):
    from visionnets.cli import main

    from visionnets.commands import COMMANDS

    if "compare" not in COMMANDS:
        pytest.skip("the compare sub-command is not registered in visionnets.commands yet")
    assert main(["compare", "digits", "--methods", "nope", "--out", str(tmp_path)]) == 2
    assert "error: unknown baseline 'nope'" in capsys.readouterr().err


def test_deep_net_column_reads_the_pretraining_gain(all_rows):
    def net(name, error, pretrained):
        return Row(method=name, label=name, kind="net", tutorial_name=None, tutorial_error=None,
                   error=error, train_seconds=10.0, test_seconds_per_1000=0.01, n_parameters=1,
                   n_train=1, n_test=1, source="test", extra={"pretrained": pretrained})

    rows = list(all_rows) + [net("m_random", 1.5, False), net("m_pretrained", 1.2, True)]
    props = properties(rows)
    assert list(props)[0] == "Deep nets"
    cell = props["Deep nets"]["Leverage unlab. data"]
    assert cell.startswith("helps: +0.30 points") and "m: 1.50% from random init, 1.20% pre-trained" in cell
    assert props["Deep nets"]["Fast training"] == "10 s to train [measured]"
    alone = properties(list(all_rows) + [net("m_pretrained", 1.2, True)])
    assert alone["Deep nets"]["Leverage unlab. data"] == NOT_MEASURED
    linear = net("m_linear", 8.0, False)
    linear.params = {"model": {"name": "linear"}}
    assert "Deep nets" not in properties([linear]) and family(linear) == "Linear"


def test_cells_measured_elsewhere(all_rows):
    props = properties(all_rows, {"SVM": {"Easy to parallelize": "1.5x with 2 workers"}})
    assert props["SVM"]["Easy to parallelize"] == "1.5x with 2 workers [measured]"
    with pytest.raises(ConfigError, match="measured.SVM.Speed: not a property"):
        properties(all_rows, {"SVM": {"Speed": "fast"}})


def test_compare_runs_again_in_the_same_place_and_shrinks_nets_and_baselines_alike(tmp_path):
    """--subsample (and --quick) apply to the nets too, on the same test images; a second
    compare in the same folder reuses the finished run, and an interrupted one is resumed."""
    common = dict(methods=["knn"], nets=["digits_convnet"], out_dir=tmp_path, subsample=300,
                  net_overrides=["train.epochs=2", "model.hidden=[16]"])
    first = compare("digits", **common)
    knn, net = first
    assert knn.n_train == 300 and net.n_test == knn.n_test == 300 and net.n_train == 270
    assert net.source.startswith("trained by compare")
    again = compare("digits", **common)
    assert again[1].source == f"reused by compare: {tmp_path / 'runs' / 'digits_convnet'}"
    assert again[1].error == net.error
    # another recipe goes beside the first run; an interrupted run is resumed
    other = dict(common, net_overrides=["train.epochs=2", "model.hidden=[8]"])
    from visionnets.train.rundir import RunDir

    def stop(trainer, record):
        raise KeyboardInterrupt

    from visionnets import api

    with pytest.raises(KeyboardInterrupt):
        api.train("digits_convnet", ["data.options.subsample=300", "train.epochs=2", "model.hidden=[8]"],
                  out=tmp_path / "runs" / "digits_convnet-2", progress=False, callbacks=(stop,))
    assert not RunDir(tmp_path / "runs" / "digits_convnet-2").finished()
    resumed = compare("digits", **other)[1]
    assert resumed.source == f"resumed by compare: {tmp_path / 'runs' / 'digits_convnet-2'}"
    assert RunDir(tmp_path / "runs" / "digits_convnet-2").finished()
    assert compare("digits", **common)[1].source.startswith("reused by compare")


def test_the_pretrained_convnet_fills_its_row_beside_its_random_init_twin():
    from visionnets.baselines.compare import TUTORIAL_NETS, default_nets

    assert TUTORIAL_NETS["mnist_convnet_pretrained"] == "Conv. Net (pre-trained)"
    assert "mnist_convnet" not in TUTORIAL_NETS                     # never pretrained: not that row
    nets = default_nets("mnist")
    assert nets.index("mnist_convnet") > nets.index("mnist_convnet_pretrained")
    assert default_nets("digits") == []


def _calibration_by_loops(probs, y, bins):
    """The plain reference: NLL and ECE one example and one bin at a time."""
    import math

    nll = sum(-math.log(max(p[t], 1e-12)) for p, t in zip(probs, y)) / len(y)
    gap = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, p in enumerate(probs) if lo <= max(p) < hi or (b == bins - 1 and max(p) == 1.0)]
        if idx:
            conf = sum(max(probs[i]) for i in idx) / len(idx)
            acc = sum(int(np.argmax(probs[i]) == y[i]) for i in idx) / len(idx)
            gap += len(idx) / len(y) * abs(acc - conf)
    return nll, 100 * gap


def test_calibration_against_a_plain_loop_and_log_loss():
    from sklearn.metrics import log_loss

    from visionnets.baselines.compare import calibration

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 4)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = rng.integers(0, 4, 500)
    c = calibration(probs, y, bins=10)
    nll, ece = _calibration_by_loops(probs, y, 10)
    assert c["nll"] == pytest.approx(nll) == pytest.approx(log_loss(y, probs, labels=range(4)))
    assert c["ece"] == pytest.approx(ece)
    assert c["accuracy"] == pytest.approx(100 * np.mean(probs.argmax(1) == y))
    sure = np.eye(4)[y]                                   # always right, always certain
    assert calibration(sure, y)["ece"] == 0 and calibration(sure, y)["nll"] == pytest.approx(0, abs=1e-9)
    wrong = np.eye(4)[(y + 1) % 4]                        # always wrong, always certain: the floor
    assert calibration(wrong, y)["ece"] == 100 and calibration(wrong, y)["nll"] == pytest.approx(-np.log(1e-12))
    with pytest.raises(Exception, match=r"probabilities: expected shape \(500, classes\)"):
        calibration(probs[:10], y)
    with pytest.raises(Exception, match=r"labels: class indices must lie in \[0, 4\)"):
        calibration(probs, y + 1)


def test_probabilities_follow_class_indices_and_are_none_for_scores():
    from visionnets.baselines import BASELINES

    ds = _digits()
    X, y = ds.train.x.reshape(800, -1).numpy(), ds.train.y.numpy()
    keep = y != 3                                          # a class never seen in training
    knn = BASELINES.build("knn", {}).fit(X[keep], y[keep])
    p = knn.probabilities(X[:50])
    assert p.shape == (50, 10) and np.allclose(p.sum(1), 1) and (p[:, 3] == 0).all()
    assert (p.argmax(1) == knn.predict(X[:50])).all()
    for name in ("svm_rbf", "boosted_stumps"):
        assert BASELINES.build(name, CHEAP.get(name, {})).fit(X, y).probabilities(X[:5]) is None
    with pytest.raises(ConfigError, match="knn.probabilities: the baseline is not fitted"):
        BASELINES.build("knn", {}).probabilities(X[:5])


def test_parallel_speedup_times_the_same_job_with_1_and_2_threads():
    from visionnets.baselines.compare import parallel_speedup

    ds = _digits()
    X, y = ds.train.x.reshape(800, -1).numpy(), ds.train.y.numpy()
    Xt = ds.test.x.reshape(300, -1).numpy()
    seen = []
    import visionnets.baselines.compare as mod

    real = mod.workers

    def spy(n):
        seen.append(n)
        return real(n)

    mod.workers = spy
    try:
        out = parallel_speedup("knn", (X, y), (Xt, None), n_train=400, n_test=100, repeats=2)
    finally:
        mod.workers = real
    assert seen == [1, 2, 1, 2]                            # alternating
    assert out["workers"] == [1, 2] and out["n_train"] == 400 and out["n_test"] == 100
    assert out["speedup"] == pytest.approx(out["seconds"][0] / out["seconds"][1])
    rows = compare(_digits(), methods=["knn"], parallel=300)
    cell = properties(rows)["k-NN"]["Easy to parallelize"]
    assert cell == (f"knn: {rows[0].extra['parallel']['speedup']:.2f}x with 2 threads over 1 "
                    "(fit + predict, 300 images) [measured]")
    with pytest.raises(ConfigError, match="repeats: expected at least 1"):
        parallel_speedup("knn", (X, y), (Xt, None), repeats=0)
