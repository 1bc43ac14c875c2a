import pytest

from repro.core.presets import PresetError, check_overrides, parse

SETTINGS = {"steps": 100, "lr": 0.1, "archs": ["mlp"], "widths": (64, 128), "by_arch": {"mlp": 600},
            "flag": False, "name": "adam", "maybe": None}


@pytest.mark.parametrize("name, text, value", [
    ("steps", "300", 300), ("lr", "1", 1.0), ("lr", "3e-4", 3e-4), ("flag", "true", True),
    ("flag", "False", False), ("name", "sgd", "sgd"), ("archs", '["mlp", "cnn"]', ["mlp", "cnn"]),
    ("widths", "64,128,256", (64, 128, 256)), ("widths", "[32]", (32,)),
    ("by_arch", '{"mlp": 10, "cnn": 20}', {"mlp": 10, "cnn": 20}), ("maybe", "[1]", [1]),
])
def test_command_line_values_take_the_defaults_type(name, text, value):
    parsed = parse(name, text, SETTINGS[name])
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize("name, text, match", [
    ("steps", "3.5", "steps == 3.5 is a float; the preset's value 100 is a int"),
    ("steps", "true", "steps == True is a bool"),
    ("steps", "ten", "steps == 'ten' is not a int"),
    ("flag", "1", "flag == 1 is a int; the preset's value False is a bool"),
    ("archs", "[1]", r"archs\[0\] == 1 is a int; the preset's value 'mlp' is a str"),
    ("by_arch", '{"mlp": 0.5}', r"by_arch\['mlp'\] == 0.5 is a float"),
    ("widths", "64", "widths == 64 is a int"),
])
def test_wrong_types_are_refused(name, text, match):
    with pytest.raises(PresetError, match=match):
        parse(name, text, SETTINGS[name])


def test_overrides_keep_the_other_settings():
    values = check_overrides(SETTINGS, {"steps": 5, "lr": 1}, "smoke")
    assert values == {**SETTINGS, "steps": 5, "lr": 1.0}
    with pytest.raises(PresetError, match=r"unknown setting\(s\) epochs for preset 'smoke'"):
        check_overrides(SETTINGS, {"epochs": 1}, "smoke")
