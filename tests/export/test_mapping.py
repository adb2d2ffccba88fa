"""Batch split and schedule mapping: hand-computed expectations."""

from __future__ import annotations

import math

import pytest

from staytuned.errors import InputError
from staytuned.export.mapping import map_schedule, resolve_config, split_batch, target_modules


@pytest.mark.parametrize(
    ("effective", "micro", "devices", "expected"),
    [
        (32, None, 1, (8, 4)),  # largest divisor <= 8
        (12, None, 1, (6, 2)),
        (7, None, 1, (7, 1)),
        (1, None, 1, (1, 1)),
        (96, None, 1, (8, 12)),
        (32, 4, 1, (4, 8)),
        (32, None, 2, (8, 2)),  # 16 per device
        (24, None, 4, (6, 1)),
    ],
)
def test_split_batch(effective, micro, devices, expected):
    split = split_batch(effective, micro, devices)
    assert (split.micro_batch, split.grad_accum) == expected
    assert split.micro_batch * split.grad_accum * devices == effective


def test_split_batch_refuses_uneven():
    with pytest.raises(InputError, match=r"micro_batch.*one of 1, 2, 4, 8, 16, 32"):
        split_batch(32, 3)
    with pytest.raises(InputError, match="devices"):
        split_batch(6, None, 4)


def test_native_schedules_map_to_themselves():
    for name in ("linear", "cosine", "constant", "constant_with_warmup", "polynomial"):
        m = map_schedule(resolve_config({"lr_scheduler": name}))
        assert (m.name, m.kwargs, m.exact, m.warning) == (name, {}, True, None)


@pytest.mark.parametrize(
    ("hp", "end", "mean"),
    [
        # exponential, gamma 0.5, 3 epochs: f(e)=0.5**e; mean = (1-0.125)/(3 ln 2) = 0.42078
        ({"lr_scheduler": "exponential", "exp_gamma": 0.5, "epochs": 3}, 0.125, 0.875 / (3 * math.log(2))),
        # time_based, k=1, 3 epochs: f(e)=1/(1+e); mean = ln(4)/3, final 1/4
        ({"lr_scheduler": "time_based", "time_decay_k": 1.0, "epochs": 3}, 0.25, math.log(4) / 3),
        # step, halve every epoch, 3 epochs: 1, 0.5, 0.25 -> mean 1.75/3, final 0.25
        ({"lr_scheduler": "step", "step_gamma": 0.5, "step_size_epochs": 1, "epochs": 3}, 0.25, 1.75 / 3),
    ],
)
def test_decays_become_polynomial_with_same_end_and_mean(hp, end, mean):
    lr = 2e-4
    m = map_schedule(resolve_config({**hp, "learning_rate": lr}))
    power = (1 - end) / (mean - end) - 1  # polynomial decay mean = end + (1-end)/(power+1)
    assert m.name == "polynomial" and not m.exact
    assert m.kwargs["lr_end"] == pytest.approx(lr * end, rel=2e-3)
    assert m.kwargs["power"] == pytest.approx(power, rel=5e-3)
    assert "no equivalent" in m.warning and hp["lr_scheduler"] in m.warning


def test_step_power_by_hand():
    # 1.75/3 = 0.58333; (1 - 0.25) / (0.58333 - 0.25) - 1 = 1.25
    m = map_schedule(resolve_config({"lr_scheduler": "step", "learning_rate": 3e-4}))
    assert m.kwargs == {"lr_end": 7.5e-05, "power": 1.25}


def test_strict_refuses_and_no_decay_is_constant():
    with pytest.raises(InputError, match=r"lr_scheduler.*no exact equivalent"):
        map_schedule(resolve_config({"lr_scheduler": "exponential"}), strict=True)
    m = map_schedule(resolve_config({"lr_scheduler": "exponential", "exp_gamma": 1.0}))
    assert m.name == "constant" and m.warning


def test_polynomial_mapping_reproduces_mean_lr_in_transformers():
    """Run HF's own polynomial scheduler with the exported kwargs: same mean and final LR."""
    torch = pytest.importorskip("torch")
    from transformers import get_scheduler

    lr, steps = 1e-4, 3000
    hp = resolve_config({"lr_scheduler": "exponential", "exp_gamma": 0.5, "epochs": 3, "learning_rate": lr})
    m = map_schedule(hp)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = get_scheduler(m.name, opt, num_warmup_steps=0, num_training_steps=steps, scheduler_specific_kwargs=m.kwargs)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert sum(lrs) / steps / lr == pytest.approx(0.875 / (3 * math.log(2)), rel=0.01)
    assert lrs[-1] / lr == pytest.approx(0.125, rel=0.02)


def test_resolve_config_defaults_and_errors():
    hp = resolve_config({})
    assert hp["learning_rate"] == 1e-4 and hp["batch_size"] == 8 and hp["method"] == "lora"
    assert resolve_config({"method": "full"})["learning_rate"] == 1e-5
    assert resolve_config({"batch_size": "16"})["batch_size"] == 16
    with pytest.raises(InputError, match=r"field 'optimizer'.*adamw, sgd, adafactor"):
        resolve_config({"optimizer": "lion"})
    with pytest.raises(InputError, match=r"batch_size.*expected an integer"):
        resolve_config({"batch_size": 8.5})
    with pytest.raises(InputError, match="lr_scheduler"):
        resolve_config({"lr_scheduler": "warmup_stable_decay"})


def test_target_modules():
    assert target_modules({"lora_target_modules": "all-linear"}) == "all-linear"
    assert target_modules({"lora_target_modules": "q_proj, v_proj"}) == ["q_proj", "v_proj"]
    with pytest.raises(InputError):
        target_modules({"lora_target_modules": " , "})
