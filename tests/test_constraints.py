"""The one table of settings: every entry point refuses a bad value with the same error and words."""

import contextlib
import dataclasses
import io
import numbers

import numpy as np
import pytensor
import pytest

from sda import SdA, SdAClassifier, SdATransformer, dA, engine
from sda.combine import CombineSettings
from sda.compare import CompareSettings, build_parser, upgrade
from sda.config import PRESETS, RunConfig, field_help, preset
from sda.constraints import MODES, SETTINGS, Setting, check_range
from sda.errors import SettingError, SettingTypeError
from sda.estimators import AS_SETTING
from sda.experiments.baseline import BaselineConfig
from sda.experiments.gradual import GradualSettings
from sda.experiments.hinton import HintonSettings
from sda.experiments.writers import WritersSettings
from sda.gradual import train_gradual
from sda.reproduce import FiltersSettings, GradualReproductionSettings, TutorialSettings
from sda.sgd import sgd_updates
from sda.sweep import SWEEP_SETTINGS, load_space

SETTINGS_CLASSES = (
    RunConfig,
    CompareSettings,
    BaselineConfig,
    GradualSettings,
    CombineSettings,
    FiltersSettings,
    TutorialSettings,
    GradualReproductionSettings,
    HintonSettings,
    WritersSettings,
)
# SdA's and dA's arguments that are table settings, under the tutorial's names
SDA_ARGUMENTS = {
    "hidden_layers": "hidden_layers_sizes",
    "corruption_levels": "corruption_levels",
    "n_ins": "n_ins",
    "n_outs": "n_outs",
    "tied": "tied",
    "loss": "loss",
}
# fields a class sets from another (baseline's batch_size sets both phases')
DERIVED = {BaselineConfig: {"pretrain_batch_size", "finetune_batch_size"}}
DA_ARGUMENTS = {"n_visible": "n_visible", "n_hidden": "n_hidden", "tied": "tied", "loss": "loss"}
ESTIMATOR_ARGUMENTS = {  # parameter -> setting
    **AS_SETTING,
    "hidden_layer_sizes": "hidden_layers",
    "corruption_levels": "corruption_levels",
    "tied": "tied",
    "loss": "loss",
    "verbose": "verbose",
}


def bad_value(entry: Setting):
    """A value ``entry`` refuses: outside its interval, not a choice, or of the wrong type."""
    interval = entry.interval
    if entry.choices is not None:
        value = "nonsense"
    elif interval is not None:
        step = 1 if interval.kind is numbers.Integral else 0.5
        value = interval.low - step if interval.low is not None else interval.high + step
        value = entry.kind(value)
    else:
        value = 3 if entry.kind is str else "no"
    return (value,) if entry.many else value


def refusal(make):
    """``(error type, message)`` of what ``make()`` raises."""
    with pytest.raises((SettingError, SettingTypeError)) as caught:
        make()
    return type(caught.value), str(caught.value)


def expected(entry: Setting, value, name=None):
    return refusal(lambda: entry.check(value, name))


def entry_points(entry: Setting, value):
    """``{entry point: make}`` for every place the setting ``entry`` enters."""
    points = {}
    for cls in SETTINGS_CLASSES:
        if entry.name in {f.name for f in dataclasses.fields(cls)} - DERIVED.get(cls, set()):
            points[cls.__name__] = lambda cls=cls: cls(**{entry.name: value}).check()
    sda_args = dict(n_ins=4, hidden_layers_sizes=(3,), n_outs=2, corruption_levels=(0.1,))
    for argument in [a for s, a in SDA_ARGUMENTS.items() if s == entry.name]:
        points["SdA"] = lambda a=argument: SdA(np.random.RandomState(0), **{**sda_args, a: value})
    for argument in [a for s, a in DA_ARGUMENTS.items() if s == entry.name]:
        points["dA"] = lambda a=argument: dA(np.random.RandomState(0), **{a: value})
    for parameter, setting_name in ESTIMATOR_ARGUMENTS.items():
        if setting_name == entry.name:
            for estimator in (SdAClassifier, SdATransformer):
                if parameter in estimator._get_param_names():
                    points[f"{estimator.__name__}({parameter})"] = lambda e=estimator, p=parameter: e(
                        **{p: value}
                    )._check_settings()
    return points


def test_every_field_of_every_settings_class_is_in_the_table():
    for cls in SETTINGS_CLASSES:
        for f in dataclasses.fields(cls):
            assert f.name in SETTINGS, f"{cls.__name__}.{f.name}"
            assert field_help(f)
    assert set(SWEEP_SETTINGS) <= set(SETTINGS)
    assert MODES == tuple(engine.MODES)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_entry_point_refuses_a_bad_value_in_the_same_words(name):
    entry = SETTINGS[name]
    value = bad_value(entry)
    want = expected(entry, value)
    for point, make in entry_points(entry, value).items():
        parameter = point.partition("(")[2].rstrip(")") or None
        argument = SDA_ARGUMENTS.get(name) if point == "SdA" else None
        as_name = parameter or argument
        assert refusal(make) == (want if as_name in (None, name) else expected(entry, value, as_name)), point


@pytest.mark.parametrize("name", sorted(n for n in SETTINGS if SETTINGS[n].interval and not SETTINGS[n].many))
def test_a_sweep_range_must_lie_inside_the_settings_range(name, tmp_path):
    entry = SETTINGS[name]
    if name not in {f.name for f in dataclasses.fields(RunConfig)}:
        return  # the sweep searches run settings only
    low, high = bad_value(entry), RunConfig.__dataclass_fields__[name].default
    high = high if high is not None else entry.kind(low + 10)
    space = tmp_path / "space.toml"
    space.write_text(f"[fixed]\npreset = 'demo'\n[search]\n{name} = {{low = {low!r}, high = {high!r}}}\n")
    kind, message = expected(entry, low)
    with pytest.raises(SettingError) as caught:
        load_space(space)
    assert message in str(caught.value)
    with pytest.raises(kind, match=None):
        check_range(name, low, high)


def test_the_estimators_and_sda_say_the_same_of_tied():
    words = refusal(lambda: SdAClassifier(tied="no")._check_settings())
    assert words == refusal(lambda: SdA(np.random.RandomState(0), n_ins=4, tied="no"))
    assert words == (SettingTypeError, "tied must be True or False, got 'no' (str)")


def test_sgd_and_gradual_training_check_through_the_table():
    w = pytensor.shared(np.float32(1.0), name="w")
    assert refusal(lambda: sgd_updates(w * w, [w], 0.1, momentum=1.5)) == (
        SettingError,
        "momentum must be in [0, 1), got 1.5",
    )
    assert refusal(lambda: sgd_updates(w * w, [w], 0.1, weight_decay=-1.0))[1] == (
        "weight_decay must be at least 0, got -1.0"
    )
    model = SdA(
        np.random.RandomState(0), n_ins=4, hidden_layers_sizes=(3,), n_outs=2, corruption_levels=(0.1,)
    )
    x = pytensor.shared(np.zeros((4, 4), dtype="float32"))
    assert refusal(lambda: train_gradual(model, x, 1, fraction_stacked=1.5))[1] == (
        "fraction_stacked must be in [0, 1], got 1.5"
    )
    assert refusal(lambda: train_gradual(model, x, 1, corruption=1.0))[1] == (
        "corruption must be in [0, 1), got 1.0"
    )


def test_run_config_is_the_default_preset():
    assert PRESETS["default"] == {}
    assert RunConfig() == preset("default")
    # a CG run records no SGD choice it did not ask for, as before the default moved into the fields
    cg = preset("default", finetune="cg")
    assert (cg.finetune_corruption, cg.finetune_lr_decay, cg.patience, cg.patience_unit) == (
        0.0,
        1.0,
        10_000,
        "iterations",
    )


def test_compares_old_batch_flag_still_works_and_says_it_is_deprecated():
    with contextlib.redirect_stderr(io.StringIO()) as err:
        args = build_parser().parse_args(["--finetune-batch-size", "250"])
    assert args.cg_batch_size == 250
    assert err.getvalue() == "warning: --finetune-batch-size is deprecated: use --cg-batch-size\n"
    # a comparison.json written before the rename loads under the new name
    assert upgrade({"finetune_batch_size": 250})["cg_batch_size"] == 250
    assert CompareSettings.from_dict({"finetune_batch_size": 250}).cg_batch_size == 250


@pytest.mark.parametrize("name", sorted(SWEEP_SETTINGS))
def test_the_sweeps_own_settings_are_checked_by_the_table(name, tmp_path):
    entry = SETTINGS[name]
    value = bad_value(entry)
    space = tmp_path / "space.toml"
    space.write_text(f"[sweep]\n{name} = {value!r}\n[search]\nfinetune_lr = {{low = 0.1, high = 1.0}}\n")
    with pytest.raises(SettingError) as caught:
        load_space(space)
    assert f"[sweep] {expected(entry, value)[1]}" in str(caught.value)


@pytest.mark.parametrize("name, repeated", [("seeds", [1, 2, 1]), ("arms", ["sgd", "cg-full", "sgd"])])
def test_a_list_of_distinct_items_refuses_one_given_twice(name, repeated):
    assert SETTINGS[name].check(repeated[:2]) == tuple(repeated[:2])
    with pytest.raises(SettingError, match=f"^{name} .*: give each one once$"):
        SETTINGS[name].check(repeated)
