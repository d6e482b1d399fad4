"""visionnets.threads: the load-aware CPU thread count, its overrides, and who asks for it."""

import pytest
import torch
from sklearn.datasets import load_digits

from visionnets import threads
from visionnets.errors import ConfigError
from visionnets.unsupervised import RBM


@pytest.mark.parametrize("cores,others,expected", [(2, None, 2), (2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1),
                                                   (2, 2.0, 1), (2, 7.0, 1), (16, 3.4, 13), (1, 0.0, 1)])
def test_choose_threads(cores, others, expected):
    assert threads.choose_threads(cores, others) == expected


def _fake_readings(monkeypatch, clock, busy, own, last=None, sleep=lambda s: None):
    """``others_busy`` reads these wall times, machine and own CPU-seconds in turn."""
    clock, busy, own = iter(clock), iter(busy), iter(own)
    monkeypatch.setattr(threads.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(threads, "_busy_seconds", lambda: next(busy))
    monkeypatch.setattr(threads, "_own_seconds", lambda: next(own))
    monkeypatch.setattr(threads, "_last", last)
    monkeypatch.setattr(threads, "_last_answer", None)
    monkeypatch.setattr(threads.time, "sleep", sleep)


def test_others_busy_subtracts_own_time(monkeypatch):
    """Machine busy 1.5 CPU-s and this process 0.5 CPU-s over 1 s of wall time: others kept 1 core busy."""
    _fake_readings(monkeypatch, [10.0, 11.0], [100.0, 101.5], [3.0, 3.5])
    assert threads.others_busy() == pytest.approx(1.0)


def test_unreadable_load_keeps_all_cores(monkeypatch):
    monkeypatch.setattr(threads, "_busy_seconds", lambda: None)
    monkeypatch.delenv("VISIONNETS_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.others_busy() is None
    assert threads.auto_threads() == threads.available_cores()


def test_overrides_in_order(monkeypatch):
    monkeypatch.setattr(threads, "others_busy", lambda: 0.0)
    monkeypatch.setenv("VISIONNETS_THREADS", "3")
    assert threads.auto_threads(2) == 2                  # an explicit count wins
    assert threads.auto_threads() == 3                   # then the environment
    monkeypatch.delenv("VISIONNETS_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.auto_threads() == 1                   # then a count given to the process
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    assert threads.auto_threads() == 4                   # then the free cores
    monkeypatch.setattr(threads, "others_busy", lambda: 3.0)
    assert threads.auto_threads() == 1


@pytest.mark.parametrize("env", ["0", "two", "-1"])
def test_bad_environment_value_is_a_one_line_error(monkeypatch, env):
    monkeypatch.setenv("VISIONNETS_THREADS", env)
    with pytest.raises(ConfigError, match="VISIONNETS_THREADS"):
        threads.auto_threads()


def test_using_threads_restores_the_count():
    before = torch.get_num_threads()
    with threads.using_threads(before + 1) as n:
        assert n == torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before
    with pytest.raises(ConfigError, match="threads=0"):
        threads.using_threads(0).__enter__()


def test_estimators_fit_with_their_threads(monkeypatch):
    seen = []
    train_batch = RBM._train_batch

    def spy(self, *args):
        seen.append(torch.get_num_threads())
        return train_batch(self, *args)
    monkeypatch.setattr(RBM, "_train_batch", spy)
    x = load_digits().data[:100] / 16
    before = torch.get_num_threads()
    est = RBM(n_components=8, n_epochs=1, batch_size=50, n_threads=2, device="cpu", random_state=0).fit(x)
    assert set(seen) == {2} and torch.get_num_threads() == before and est.n_threads_ == 2
    monkeypatch.setenv("VISIONNETS_THREADS", "3")
    seen.clear()
    est = RBM(n_components=8, n_epochs=1, batch_size=50, device="cpu", random_state=0).fit(x)
    assert set(seen) == {3} and est.n_threads_ == 3
    with pytest.raises(ConfigError, match="n_threads=0"):
        RBM(n_threads=0, device="cpu").fit(x)


def test_trainer_chooses_before_each_epoch(monkeypatch, tmp_path):
    from visionnets import api
    from visionnets.train import trainer

    asked = []

    def fake(requested=None):
        asked.append(requested)
        return 1 if len(asked) % 2 else 2          # the load changes between epochs
    monkeypatch.setattr(trainer, "auto_threads", fake)
    res = api.train("mnist_linear", overrides=["data.name=digits", "train.epochs=2"], out=tmp_path / "run",
                    progress=False, figures=False)
    assert asked == [None, None]
    assert [h["executor"]["threads"] for h in res.history] == [1, 2]


def test_a_call_within_the_window_reuses_the_last_answer(monkeypatch):
    """A second call 10 ms after a measurement answers as it did, without sleeping or measuring."""
    def no_sleep(s):
        raise AssertionError("slept")

    _fake_readings(monkeypatch, [11.0, 11.01], [101.5, 999.0], [3.5, 0.0], last=(10.0, 100.0, 3.0), sleep=no_sleep)
    assert threads.others_busy() == pytest.approx(1.0)       # a full window since _last: measured
    assert threads.others_busy() == pytest.approx(1.0)       # 10 ms later: the same answer
