import pytest
import torch

import repro
from repro.core.presets import PresetError, resolve
from repro.core.runtime import resolve_device, seed_everything

PRESETS = {"smoke": {"steps": 10}, "full": {"steps": 1000}}


def test_setup_resolves_preset_and_prints(capsys):
    cfg = repro.setup("full", 3, "cpu", presets=PRESETS)
    assert (cfg.preset, cfg.seed, cfg.steps, cfg["steps"]) == ("full", 3, 1000, 1000)
    assert cfg.device == torch.device("cpu") and cfg.threads == 1
    assert torch.get_num_threads() == 1
    out = capsys.readouterr().out
    assert "preset = 'full'" in out and "steps = 1000" in out


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(PresetError, match=r"unknown preset 'huge'; valid presets: smoke, full"):
        repro.setup("huge", 0, "cpu", presets=PRESETS)


@pytest.mark.parametrize("presets, match", [({}, "non-empty dict"), ({"smoke": [1]}, "must be a dict")])
def test_bad_preset_tables(presets, match):
    with pytest.raises(PresetError, match=match):
        resolve("smoke", presets)


def test_same_seed_same_numbers():
    repro.setup("smoke", 7, "cpu", presets=PRESETS, quiet=True)
    a = torch.randn(5)
    repro.setup("smoke", 7, "cpu", presets=PRESETS, quiet=True)
    assert torch.equal(a, torch.randn(5))


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match="non-negative int"):
        seed_everything(seed)


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="must be 'auto', 'cpu' or 'cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")


def test_missing_config_value_names_the_valid_ones():
    cfg = repro.setup("smoke", 0, "cpu", presets=PRESETS, quiet=True)
    with pytest.raises(AttributeError, match="has no value 'lr'; it has: steps"):
        cfg.lr
    assert cfg.as_dict()["steps"] == 10


def test_overrides_replace_settings_and_are_shown(capsys):
    cfg = repro.setup("smoke", 0, "cpu", presets=PRESETS, overrides={"steps": 30})
    assert cfg.steps == 30 and cfg.overridden == {"steps": 10}
    assert "steps = 30  (overridden; the preset says 10)" in capsys.readouterr().out


@pytest.mark.parametrize("overrides, match", [
    ({"lr": 0.1}, r"unknown setting\(s\) lr for preset 'smoke'; its settings are: steps \(default 10\)"),
    ({"steps": "30"}, "steps == '30' is a str; the preset's value 10 is a int"),
    ({"steps": 2.5}, "is a float"),
])
def test_bad_overrides_stop_before_any_work(overrides, match):
    with pytest.raises(PresetError, match=match):
        repro.setup("smoke", 0, "cpu", presets=PRESETS, overrides=overrides)
