"""The plumbing every command shares: flags from the settings dataclasses, their checks,
one-line errors, and no folder made before the settings are known to be good."""

import argparse
import dataclasses
import json

import pytest

from sda import replot
from sda.cli import add_settings_flags, apply_mode, experiment_folder, settings_from_args
from sda.config import PRESETS, RunConfig, SettingError, check_name, check_optimiser_flags, field_help, preset
from sda.constraints import DEFAULT_BATCH_SIZE
from sda.errors import SdAError, SettingTypeError, TrainingDiverged, exit_status
from sda.experiments import baseline, gradual
from sda.run import build_parser, early_stopping, parse
from sda.run import main as main_run

PARSERS = {"run": build_parser, "baseline": baseline.build_parser, "gradual": gradual.build_parser}


# ------------------------------------------------------------------------ help
@pytest.mark.parametrize("command", PARSERS)
def test_every_flag_shows_one_default(command):
    parser = PARSERS[command]()
    for action in parser._actions:
        if action.option_strings and action.dest not in ("help", "quick", "resume"):
            assert action.help.count("(default:") == 1, action.help
            assert "None" not in action.help, action.help


def test_help_gives_each_presets_own_value():
    helps = {a.dest: a.help for a in build_parser()._actions}
    assert helps["pretrain_lr"].endswith(
        "(default: 0.05; --preset classic: 0.02; --preset tutorial: 0.001; --preset demo: 0.01)"
    )
    assert helps["loss"].endswith("(default: cross_entropy)")  # no preset changes it
    assert "at least i x this" in helps["patience_increase"]
    quick = {a.dest: a.help for a in baseline.build_parser()._actions}
    assert quick["eval_every_iterations"].endswith("(default: 500; --quick: 40)")


def test_every_setting_has_help_on_its_field():
    for settings in (RunConfig, baseline.BaselineConfig, gradual.GradualSettings):
        for f in dataclasses.fields(settings):
            assert field_help(f), f.name


# ------------------------------------------------------------------ the presets
def test_tutorial_preset_is_the_tutorials_early_stopping():
    config, _ = parse(["--preset", "tutorial"])
    stopping = early_stopping(config, n_train_batches=50_000)  # MNIST at batch 1
    assert stopping.patience == 10 * 50_000  # ten epochs
    assert (stopping.patience_increase, stopping.improvement_threshold) == (2.0, 0.995)
    assert stopping.frequency(50_000) == 50_000  # once per epoch


def test_default_preset_fine_tunes_every_epoch_and_validates_each():
    config = preset("default")
    stopping = early_stopping(config, n_train_batches=2500)  # MNIST at batch 20
    # patience never ends the run, even with a longer budget; the best epoch's weights are kept
    assert stopping.patience >= 10 * config.finetune_epochs * 2500 and stopping.frequency(2500) == 2500
    assert config.finetune_corruption > 0 and config.finetune_lr_decay < 1


def test_classic_preset_states_its_own_rule():
    config = preset("classic")
    assert (config.patience, config.patience_unit) == (10_000, "iterations")
    stopping = early_stopping(config, n_train_batches=2500)  # MNIST at batch 20
    assert (stopping.patience, stopping.frequency(2500)) == (10_000, 2500)
    # a small training set: patience // 2 caps the validation interval
    assert early_stopping(config, n_train_batches=30_000).frequency(30_000) == 5000


# --------------------------------------------------------------------- settings
@pytest.mark.parametrize(
    "change, message",
    [
        (dict(patience_increase=0.5), "patience_increase must be at least 1, got 0.5"),
        (dict(improvement_threshold=2.0), "improvement_threshold must be in (0, 1]"),
        (dict(improvement_threshold=0.0), "improvement_threshold must be in (0, 1]"),
        (dict(improvement_threshold=float("nan")), "improvement_threshold must be in (0, 1], got nan"),
        (dict(momentum=float("inf")), "momentum must be in [0, 1), got inf"),
        (dict(corruption_levels=(-0.1, 0.2)), "corruption_levels[0] must be in [0, 1), got -0.1"),
        (dict(corruption_levels=(1.0, 0.2)), "corruption_levels[0] must be in [0, 1), got 1.0"),
        (dict(corruption_levels=(float("nan"), 0.2)), "corruption_levels[0] must be in [0, 1), got nan"),
        (dict(hidden_layers=(0, 5)), "hidden_layers[0] must be at least 1, got 0"),
        (dict(hidden_layers=(), corruption_levels=()), "hidden_layers must hold at least 1 value"),
        (dict(hidden_layers=(5.5, 5)), "hidden_layers[0] must be a whole number at least 1, got 5.5 (float)"),
        (
            dict(hidden_layers=(True, 5)),
            "hidden_layers[0] must be a whole number at least 1, got True (bool)",
        ),
        (dict(seed=-1), "seed must be in [0, 4294967295]"),
        (dict(seed=2**40), "seed must be in [0, 4294967295]"),
        (dict(pretrain_epochs="3"), "pretrain_epochs must be a whole number at least 0, got '3' (str)"),
        (dict(tied="no"), "tied must be True or False, got 'no' (str)"),
        (dict(finetune="adam"), "finetune must be one of 'sgd', 'cg', 'lbfgs', got 'adam'"),
        (dict(mode="gpu"), "mode must be one of 'c', 'numba', 'jax', got 'gpu'"),
        (dict(patience_unit="days"), "patience_unit must be one of"),
        (dict(line_searches=0), "line_searches must be at least 1, got 0"),
        (dict(warmup_epochs=-1), "warmup_epochs must be at least 0, got -1"),
        (dict(budget_passes=0.0), "budget_passes must be more than 0, got 0.0"),
        (dict(eval_every=0.0), "eval_every must be more than 0, got 0.0"),
        (dict(eval_every=float("nan")), "eval_every must be more than 0, got nan"),
        (dict(finetune_lr_decay=0.0), "finetune_lr_decay must be in (0, 1]"),
        (dict(finetune_lr_decay=1.5), "finetune_lr_decay must be in (0, 1]"),
        (dict(finetune_corruption=1.0), "finetune_corruption must be in [0, 1)"),
        (dict(n_train=0), "n_train must be at least 1, got 0"),
        (dict(name="../.."), "not a plain folder name"),
        (dict(name="a\nb"), "not a plain folder name"),
        (dict(finetune="cg", warmup_epochs=100), "warmup_epochs 100 leaves none of the 100"),
    ],
)
def test_run_settings_are_checked(change, message):
    with pytest.raises((SettingError, SettingTypeError)) as caught:
        preset("demo", **change)
    assert message in str(caught.value)


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "/tmp/x", "../escape", "a\0b"])
def test_names_that_leave_out_are_refused(name):
    with pytest.raises(SettingError, match="plain folder name"):
        check_name(name)


def test_a_presets_sgd_batch_is_not_cgs_m():
    # the tutorial's batch of 1 is an SGD minibatch: CG on 1-row batches is not what --finetune cg means
    assert preset("tutorial").finetune_rows() == 1
    assert preset("tutorial", finetune="cg").finetune_rows() == DEFAULT_BATCH_SIZE
    assert preset("demo", finetune="lbfgs", finetune_batch_size=50).finetune_rows() == 50


def test_cg_does_not_inherit_the_default_presets_sgd_settings():
    # config.json of a CG run must not claim input dropout or a decaying rate it never used
    sgd, cg = preset("default"), preset("default", finetune="cg")
    assert (sgd.finetune_corruption, sgd.finetune_lr_decay) == (0.2, 0.95)
    assert (cg.finetune_corruption, cg.finetune_lr_decay, cg.patience_unit) == (0.0, 1.0, "iterations")
    assert cg.finetune_epochs == sgd.finetune_epochs  # both optimisers read the epoch budget
    # input dropout is CG's too, when the user asks for it
    check_optimiser_flags("cg", ["finetune_corruption"])
    assert preset("default", finetune="cg", finetune_corruption=0.2).finetune_corruption == 0.2


@pytest.mark.parametrize(
    "finetune, given, ignored",
    [
        ("sgd", ["batch_patience", "seed"], "batch_patience is read only by --finetune cg or lbfgs"),
        ("sgd", ["eval_every"], "eval_every is read only under a pass budget"),
        ("sgd", ["line_searches", "warmup_epochs"], "line_searches, warmup_epochs are read only by"),
        (
            "cg",
            ["finetune_lr", "patience_unit"],
            "finetune_lr, patience_unit are read only by --finetune sgd",
        ),
        (
            "lbfgs",
            ["finetune_lr_decay", "improvement_threshold"],
            "finetune_lr_decay, improvement_threshold are read only by --finetune sgd",
        ),
    ],
)
def test_a_flag_the_optimiser_would_ignore_is_refused(finetune, given, ignored, tmp_path, capsys):
    with pytest.raises(SettingError, match=ignored):
        check_optimiser_flags(finetune, given)
    flags = [f"--{name.replace('_', '-')}" for name in given if name != "seed"]
    values = {
        "--patience-unit": "epochs",
        "--finetune-lr": "0.5",
        "--finetune-lr-decay": "0.9",
        "--improvement-threshold": "0.9",
    }
    argv = ["--finetune", finetune, *[x for flag in flags for x in (flag, values.get(flag, "2"))]]
    assert main_run(["--preset", "demo", "--out", str(tmp_path), *argv]) == 2
    assert ignored in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
    check_optimiser_flags("lbfgs", ["budget_passes", "warmup_epochs", "momentum"])  # all read


def test_config_json_round_trip_and_its_errors():
    config = preset("demo", name="x")
    assert RunConfig.from_json(config.to_json()) == config
    values = json.loads(config.to_json())
    with pytest.raises(SettingError, match=r"config.json has unknown settings \['colour'\]"):
        RunConfig.from_json(json.dumps({**values, "colour": "red"}))
    with pytest.raises(SettingTypeError, match="config.json: hidden_layers must be a list"):
        RunConfig.from_json(json.dumps({**values, "hidden_layers": "100"}))
    with pytest.raises(SettingTypeError, match="config.json: seed must be a whole number"):
        RunConfig.from_json(json.dumps({**values, "seed": "1"}))
    with pytest.raises(SettingError, match="config.json is not valid JSON"):
        RunConfig.from_json("{not json")
    with pytest.raises(SettingTypeError, match="must hold a JSON object"):
        RunConfig.from_json("[1, 2]")
    # a folder written before a setting existed takes its default
    del values["line_searches"]
    assert RunConfig.from_json(json.dumps(values)).line_searches == RunConfig.line_searches


def test_flags_are_laid_over_the_preset():
    parser = argparse.ArgumentParser()
    add_settings_flags(parser, RunConfig, {"default": PRESETS["default"]})
    args = parser.parse_args(["--hidden-layers", "7", "--corruption-levels", "0.5", "--no-tied"])
    config = settings_from_args(args, RunConfig, {**PRESETS["demo"], "preset": "demo"})
    assert (config.hidden_layers, config.corruption_levels, config.tied) == ((7,), (0.5,), False)
    assert config.pretrain_lr == PRESETS["demo"]["pretrain_lr"]  # not typed: the preset's


def test_gradual_settings_are_checked_before_anything_else():
    parser = gradual.build_parser()
    settings = settings_from_args(
        parser.parse_args(["--quick", "--fractions", "1", "0", "0.5", "0"]),
        gradual.GradualSettings,
        gradual.QUICK,
    )
    assert settings.fractions == (0.0, 0.5, 1.0)
    assert settings.corruption_levels == (settings.corruption,) * 2
    for flags, message in [
        (["--fractions", "0", "0.5"], "include both"),
        (["--hidden-layers", "40"], "at least two layers"),
        (["--corruption", "1.0"], "corruption must be in [0, 1), got 1.0"),
        (["--seed", "-3"], "seed must be in"),
        (["--momentum", "nan"], "momentum must be in [0, 1), got nan"),
    ]:
        with pytest.raises(SettingError) as caught:
            settings_from_args(parser.parse_args(["--quick", *flags]), gradual.GradualSettings, gradual.QUICK)
        assert message in str(caught.value)


# ------------------------------------------------------------ bad flags: no folder
@pytest.mark.parametrize(
    "main, args",
    [
        (baseline.main, ["--quick", "--hidden-layers", "0"]),
        (baseline.main, ["--quick", "--seed", "-1"]),
        (baseline.main, ["--quick", "--eval-every", "100000"]),  # needs the data to know
        (gradual.main, ["--quick", "--fractions", "0", "0.5"]),
        (gradual.main, ["--quick", "--corruption", "nan"]),
        # a minibatch larger than the training rows is refused, not silently cut, in every command
        (baseline.main, ["--quick", "--batch-size", "100000"]),
        (gradual.main, ["--quick", "--batch-size", "601"]),  # --quick trains on 600 rows
    ],
)
def test_experiments_with_bad_flags_make_no_folder(tmp_path, capsys, main, args):
    out = tmp_path / "out"
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not out.exists()


def test_errors_name_the_flag_the_user_typed(capsys):
    assert baseline.main(["--quick", "--batch-size", "0"]) == 2
    assert capsys.readouterr().err == "error: batch_size must be at least 1, got 0\n"
    assert baseline.main(["--quick", "--batch-size", "2000"]) == 2
    assert "batch_size 2000 is larger than the 1197 training rows" in capsys.readouterr().err


# ---------------------------------------------------------------------- replot
def test_replot_skips_curves_without_a_finite_point_and_plots_cg_by_passes(tmp_path):
    (tmp_path / "metrics.csv").write_text(
        "phase,layer,epoch,cost,valid_error,best_valid_error,test_error,seconds,passes\n"
        "finetune,,1,2.3,0.9,0.9,0.9,0.1,0.0\nfinetune,,2,1.2,0.5,0.5,0.4,0.2,0.5\n"
    )
    (tmp_path / "steps.csv").write_text("phase,layer,epoch,step,cost\nfinetune,,1,1,inf\n")
    written = replot.replot(tmp_path, tmp_path / "plots")
    # the steps' only cost is not finite: no steps figure, and no traceback from an empty curve
    assert sorted(p.name for p in written) == ["finetune_cost.png", "finetune_error.png"]
    assert all(p.stat().st_size > 0 for p in written)


# ----------------------------------------------------------------- exit status
def test_exit_status_turns_errors_into_one_line(capsys):
    def fail(error):
        def action():
            raise error

        return action

    assert exit_status(fail(TrainingDiverged("fine-tuning", "cost", epoch=2))) == 2
    assert capsys.readouterr().err == (
        "error: fine-tuning diverged at epoch 2: the cost is nan; try a smaller learning rate\n"
    )
    assert exit_status(fail(SdAError("two\nlines"))) == 2
    assert capsys.readouterr().err == "error: two lines\n"
    assert exit_status(fail(KeyboardInterrupt("resume it with: X"))) == 130
    assert capsys.readouterr().err == "interrupted: resume it with: X\n"
    with pytest.raises(RuntimeError):  # a bug is not a user error: its traceback stays
        exit_status(fail(RuntimeError("bug")))
    with pytest.raises(ValueError):  # user errors are SdAErrors, e.g. SettingError
        exit_status(fail(ValueError("bug")))
    assert exit_status(lambda: None) == 0


def test_mode_none_keeps_the_engines_choice():
    assert apply_mode(None) is None
    assert isinstance(apply_mode("c"), str)


def test_ctrl_c_in_an_experiment_says_where_its_partial_results_are(tmp_path):
    out = tmp_path / "results"
    with pytest.raises(KeyboardInterrupt, match=f"partial results are in {out}$"):
        with experiment_folder(out, "demo") as folder:
            (folder.path / "table.csv").write_text("half done\n")
            raise KeyboardInterrupt
    assert (out / "table.csv").read_text() == "half done\n"  # kept, and
    with pytest.raises(SdAError, match="already holds files"):  # never overwritten
        with experiment_folder(out, "demo"):
            pass
