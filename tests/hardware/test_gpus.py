"""Which GPUs each local worker gets, with faked device lists (no GPU needed)."""

from __future__ import annotations

import pytest

from staytuned.errors import InputError
from staytuned.hardware import gpus
from staytuned.hardware.gpus import assign_gpus, auto_workers, describe_gpus, visible_gpus

FOUR = ("0", "1", "2", "3")


@pytest.mark.parametrize(("workers", "ids", "per", "expected"), [
    (1, ("0",), None, ["0"]),  # default: one GPU per trial
    (2, ("0", "1"), None, ["0", "1"]),
    (4, FOUR, 1, ["0", "1", "2", "3"]),
    (2, FOUR, 1, ["0", "1"]),  # fewer workers than GPUs: the rest stay idle
    (2, FOUR, 2, ["0,1", "2,3"]),  # two GPUs per trial
    (1, FOUR, 2, ["0,1"]),
    (1, FOUR, 4, ["0,1,2,3"]),
    (4, ("0", "1"), 0.5, ["0", "1", "0", "1"]),  # half a GPU each: two per GPU, round-robin
    (3, ("0",), 0.25, ["0", "0", "0"]),
    (2, ("0", "1"), 0, ["", ""]),  # no GPU per trial: hidden, the trials run on the CPU
    (3, ("GPU-aa", "GPU-bb"), 1, None),  # oversubscribed: below
])
def test_each_worker_gets_its_own_gpus(workers, ids, per, expected):
    if expected is None:
        with pytest.raises(InputError, match=r"field 'workers'.*3 workers x 1 GPU\(s\) each.*"
                                             r"2 GPU\(s\) visible \(GPU-aa,GPU-bb\).*at most 2 workers"):
            assign_gpus(workers, ids, per)
        return
    assert assign_gpus(workers, ids, per) == expected


def test_cpu_only_machines_keep_todays_behaviour():
    """No GPU: nothing is set, whatever the number of workers (unless GPUs are asked for)."""
    assert assign_gpus(3, ()) == [None, None, None]
    assert assign_gpus(2, (), 0) == [None, None]
    with pytest.raises(InputError, match=r"field 'gpus_per_trial'.*no GPU"):
        assign_gpus(1, (), 1)
    assert auto_workers(0) == 1 and auto_workers(0, 2) == 1


@pytest.mark.parametrize(("n", "per", "expected"), [
    (1, None, 1), (8, None, 8), (8, 1, 8), (8, 2, 4), (3, 2, 1), (2, 0.5, 4), (2, 1 / 3, 6),
    (4, 0, 1),  # no GPU per trial: one worker, as without GPUs
])
def test_auto_is_as_many_workers_as_the_gpus_hold(n, per, expected):
    assert auto_workers(n, per) == expected


def test_more_workers_than_gpus_is_an_error_unless_shared():
    with pytest.raises(InputError, match=r"field 'workers'.*`share_gpus`") as info:
        assign_gpus(3, ("0", "1"), 1)
    assert info.value.value == 3
    assert assign_gpus(3, ("0", "1"), 1, share=True) == ["0", "1", "0"]
    with pytest.raises(InputError, match=r"field 'workers'.*at most 1 workers"):
        assign_gpus(2, ("0", "1", "2"), 2)
    assert assign_gpus(2, ("0", "1", "2"), 2, share=True) == ["0,1", "2,0"]
    with pytest.raises(InputError, match=r"field 'workers'.*at most 4 workers"):
        assign_gpus(5, ("0", "1"), 0.5)
    assert assign_gpus(5, ("0", "1"), 0.5, share=True) == ["0", "1", "0", "1", "0"]


@pytest.mark.parametrize(("per", "message"), [
    (-1, "must be a number >= 0"), (1.5, "fraction is only allowed below 1"),
    (float("nan"), "must be a number >= 0"), ("1", "must be a number >= 0"),
    (3, "more GPUs per trial than the 2 visible"),  # even shared: a trial cannot span 3 of 2
])
def test_bad_gpus_per_trial(per, message):
    for share in (False, True):
        with pytest.raises(InputError, match=rf"field 'gpus_per_trial'.*{message}"):
            assign_gpus(1, ("0", "1"), per, share=share)


@pytest.mark.parametrize("workers", [0, -1, 1.5, True, "2"])
def test_bad_worker_counts(workers):
    with pytest.raises(InputError, match="field 'workers'"):
        assign_gpus(workers, ("0",))


def test_the_parents_cuda_visible_devices_is_honoured(monkeypatch):
    assert visible_gpus({}, count=2) == ("0", "1")
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}, count=2) == ("2", "3")
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": " 5, 7 ,"}, count=2) == ("5", "7")
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3,9"}, count=2) == ("2", "3")  # 9: no device
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, count=0) == ()
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-aa,GPU-bb"}, count=2) == ("GPU-aa", "GPU-bb")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    monkeypatch.setattr(gpus, "gpu_count", lambda: 2)
    ids = visible_gpus()
    assert ids == ("4", "6") and assign_gpus(2, ids) == ["4", "6"]
    assert assign_gpus(1, ids, 2) == ["4,6"]


def test_describe_says_what_each_worker_got():
    assert describe_gpus(["0", "1"]) == "2 workers, GPU 0 and GPU 1"
    assert describe_gpus(["0"]) == "1 worker, GPU 0"
    assert describe_gpus(["0,1", "2,3"]) == "2 workers, GPUs 0,1 and GPUs 2,3"
    assert describe_gpus(["0", "1", "0"]) == "3 workers, GPU 0, GPU 1 and GPU 0 (shared)"
    assert describe_gpus(["", ""]) == "2 workers, no GPU"
    assert describe_gpus([None, None]) == "2 worker(s)"  # CPU-only: as before
