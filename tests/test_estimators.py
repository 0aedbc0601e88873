"""The scikit-learn estimators: scikit-learn's own estimator checks, pipelines and
grid search, pickling, every solver, string labels, seeds, and input checks."""

import copyreg
import doctest
import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from unittest import SkipTest

import joblib
import numpy as np
import pytensor
import pytest
from numpy.testing import assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils.estimator_checks import check_estimator, estimator_checks_generator

import sda.estimators
from sda import SdA, SdAClassifier, SdATransformer
from sda.errors import SdAError, SettingError, SettingTypeError

# Tiny networks: the checks test scikit-learn's contract, not accuracy, and
# each of their many fits compiles a few PyTensor functions.
TINY = dict(hidden_layer_sizes=(8,), pretrain_epochs=1, batch_size=10, random_state=0)
ESTIMATORS = [SdAClassifier(**TINY, max_iter=10), SdATransformer(**TINY)]

# Checks that fit on data with values outside [0, 1]: fit refuses it by design.
REFUSED_RANGE = (
    "the check fits on data outside [0, 1], which SdA estimators refuse (a sigmoid "
    "reconstructs each input); the same check passes behind MinMaxScaler(clip=True)"
)
OUTSIDE_UNIT_INTERVAL = [
    "check_estimators_overwrite_params",
    "check_dont_overwrite_parameters",
    "check_estimators_fit_returns_self",
    "check_readonly_memmap_input",
    "check_n_features_in_after_fitting",
    "check_estimators_dtypes",
    "check_pipeline_consistency",
    "check_estimators_pickle",
    "check_f_contiguous_array_estimator",
    "check_methods_sample_order_invariance",
    "check_methods_subset_invariance",
    "check_fit2d_1sample",
    "check_fit2d_1feature",
    "check_dict_unchanged",
    "check_fit_idempotent",
    "check_fit_check_is_fitted",
    "check_n_features_in",
    "check_fit2d_predict1d",
]
ONLY_FOR = {
    "SdAClassifier": [
        "check_classifier_data_not_an_array",
        "check_classifiers_classes",
        "check_classifiers_train",
        "check_non_transformer_estimators_n_iter",
    ],
    "SdATransformer": [
        "check_transformer_data_not_an_array",
        "check_transformer_general",
        "check_transformer_preserve_dtypes",
    ],
}
# Pipeline fits its steps in place, so its `steps` parameter changes during fit: these two
# fail for make_pipeline(MinMaxScaler(), LogisticRegression()) as well.
PIPELINE_STEPS = "Pipeline fits its steps in place; fails for any Pipeline, e.g. with LogisticRegression"
PIPELINE_FAILURES = {
    "check_estimators_overwrite_params": PIPELINE_STEPS,
    "check_dont_overwrite_parameters": PIPELINE_STEPS,
}


def expected_range_failures(estimator):
    return {name: REFUSED_RANGE for name in OUTSIDE_UNIT_INTERVAL + ONLY_FOR[type(estimator).__name__]}


def run_checks(estimator, expected, only=None):
    """Run every estimator check (or those named in ``only``, each of which must be among
    them); assert that nothing failed but the ``expected`` checks, and that each of those
    did fail; return the results of those."""
    if only is None:
        results = check_estimator(estimator, expected_failed_checks=expected, on_fail=None, on_skip=None)
    else:
        results = run_named_checks(estimator, only, expected)
        assert {r["check_name"] for r in results} == set(only)
    failed = [(r["check_name"], repr(r["exception"])[:300]) for r in results if r["status"] == "failed"]
    assert failed == []
    unexpectedly_passed = {r["check_name"] for r in results if r["status"] == "passed"} & set(expected)
    assert unexpectedly_passed == set()
    assert {r["check_name"] for r in results if r["status"] == "xfail"} == set(expected)
    return [r for r in results if r["status"] == "xfail"]


def run_named_checks(estimator, names, expected):
    """check_estimator's results for the checks of ``estimator`` named in ``names`` alone."""
    results = []
    for instance, check in estimator_checks_generator(estimator, legacy=True, mark=None):
        name = getattr(check, "func", check).__name__
        if name not in names:
            continue
        try:
            check(instance)
        except SkipTest as error:
            status, exception = "skipped", error
        except Exception as error:
            status, exception = ("xfail" if name in expected else "failed"), error
        else:
            status, exception = "passed", None
        results.append({"check_name": name, "status": status, "exception": exception})
    return results


@pytest.fixture
def fast_compile():
    """The checks fit ~150 tiny models, and compiling dominates each fit: PyTensor's
    FAST_COMPILE mode halves that. The numbers of the default mode are tested below."""
    with pytensor.config.change_flags(mode="FAST_COMPILE"):
        yield


@pytest.mark.usefixtures("fast_compile")
@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_estimator_checks(estimator):
    for result in run_checks(estimator, expected_range_failures(estimator)):
        # each expected failure is the refusal of out-of-range data, not another fault
        assert "in data passed to" in str(result["exception"]), result["check_name"]


@pytest.mark.usefixtures("fast_compile")
@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_estimator_checks_behind_minmax_scaler(estimator):
    """The checks that the range refusal stopped above, with the data scaled into [0, 1]:
    each runs here on the SdA itself. The other checks passed above on the bare estimator;
    running them again behind the scaler would test the Pipeline, not the SdA."""
    pipeline = make_pipeline(MinMaxScaler(clip=True), clone(estimator))
    run_checks(pipeline, PIPELINE_FAILURES, only=set(expected_range_failures(estimator)))


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.3, stratify=y, random_state=0)


@pytest.fixture(scope="module")
def fitted_on_digits(digits):
    """``fitted_on_digits(estimator)``: a clone of ``estimator`` fitted on the digits, fitted once
    per module for every test that only reads it (pickling copies its weights; nothing edits it)."""
    X_train, _, y_train, _ = digits
    fitted = {}

    def fit(estimator):
        key = repr(estimator)
        if key not in fitted:
            fitted[key] = clone(estimator).fit(X_train, y_train)
        return fitted[key]

    return fit


def small_classifier(**settings):
    return SdAClassifier(
        **{**dict(hidden_layer_sizes=(32,), pretrain_epochs=2, max_iter=15, random_state=0), **settings}
    )


def test_pipeline_and_grid_search_on_digits():
    X, y = load_digits(return_X_y=True)  # pixels 0..16: the scaler puts them in [0, 1]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    # no clip: the held-out folds have pixels brighter than any the scaler saw, past 1
    pipeline = make_pipeline(MinMaxScaler(), small_classifier(max_iter=10))
    search = GridSearchCV(pipeline, {"sdaclassifier__hidden_layer_sizes": [(16,), (32,)]}, cv=2)
    search.fit(X_train[:600], y_train[:600])
    assert len(search.cv_results_["params"]) == 2
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    # 10 classes: chance is 0.1; even 600 rows and a few epochs reach far above it
    assert search.best_score_ > 0.8
    assert search.score(X_test, y_test) > 0.8
    assert (
        search.best_estimator_[-1].hidden_layer_sizes
        == search.best_params_["sdaclassifier__hidden_layer_sizes"]
    )


@pytest.mark.floats
@pytest.mark.parametrize("solver", ["sgd", "cg", "lbfgs"])
def test_each_solver_fits(digits, solver):
    X_train, X_test, y_train, y_test = digits
    model = small_classifier(solver=solver).fit(X_train, y_train)
    assert model.score(X_test, y_test) > 0.85
    assert model.n_iter_ >= 1
    assert len(model.loss_curve_) == len(model.validation_scores_) == model.n_iter_
    assert all(0 <= s <= 1 for s in model.validation_scores_)
    # the kept weights are the best seen, which may be the pre-trained start (cg/lbfgs)
    assert model.best_validation_score_ >= max(model.validation_scores_)
    assert model.loss_curve_[-1] < model.loss_curve_[0]
    assert [len(costs) for costs in model.pretrain_loss_curves_] == [2]
    proba = model.predict_proba(X_test)
    assert proba.shape == (len(X_test), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)  # normalised in float64
    np.testing.assert_allclose(np.exp(model.predict_log_proba(X_test)), proba)
    assert_array_equal(model.predict(X_test), model.classes_[proba.argmax(axis=1)])


@pytest.mark.floats
def test_string_labels_give_the_same_model(digits, fitted_on_digits):
    X_train, X_test, y_train, _ = digits
    names = np.array([f"digit {d}" for d in range(10)])  # sorted as the integers are
    by_number = fitted_on_digits(small_classifier(max_iter=5))
    by_name = small_classifier(max_iter=5).fit(X_train, names[y_train])
    assert_array_equal(by_name.classes_, names)
    assert_array_equal(by_name.predict(X_test), names[by_number.predict(X_test)])


@pytest.mark.floats
def test_same_random_state_same_model_other_state_other_model(digits, fitted_on_digits):
    X_train, X_test, y_train, _ = digits
    first = fitted_on_digits(small_classifier(max_iter=5)).predict_proba(X_test)
    again = small_classifier(max_iter=5).fit(X_train, y_train).predict_proba(X_test)
    other = small_classifier(max_iter=5, random_state=1).fit(X_train, y_train).predict_proba(X_test)
    # same machine, same thread count, same process: bit for bit
    assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3


@pytest.mark.floats
@pytest.mark.parametrize(
    "dump, load",
    [(pickle.dumps, pickle.loads), (lambda m: _joblib_bytes(m), lambda b: joblib.load(io.BytesIO(b)))],
    ids=["pickle", "joblib"],
)
def test_pickled_classifier_predicts_the_same(digits, fitted_on_digits, dump, load):
    _, X_test, _, _ = digits
    model = fitted_on_digits(small_classifier(max_iter=5))
    expected = model.predict_proba(X_test)
    blob = dump(model)
    assert b"pytensor" not in blob  # numpy weights only: no graph, no compiled function
    loaded = load(blob)
    assert "_weights" not in vars(loaded)  # the network is rebuilt, and checked, when loaded
    assert_array_equal(loaded.predict_proba(X_test), expected)
    assert_array_equal(loaded.predict(X_test), model.predict(X_test))
    assert_array_equal(load(dump(loaded)).predict(X_test), model.predict(X_test))  # pickles again


def _joblib_bytes(model):
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


@pytest.mark.floats
def test_transformer_codes_layers_scores_and_pickles(digits):
    X_train, X_test, *_ = digits
    untrained = SdATransformer((24, 12), pretrain_epochs=0, random_state=0).fit(X_train)
    trained = SdATransformer((24, 12), pretrain_epochs=3, random_state=0).fit(X_train)
    assert untrained.pretrain_loss_curves_ == [[], []]
    assert trained.transform(X_test).shape == (len(X_test), 12)
    assert trained.set_params(layer=0).transform(X_test).shape == (len(X_test), 24)
    assert len(trained.get_feature_names_out()) == 24
    # greater is better: pre-training lowers the reconstruction cost of new rows
    assert trained.score(X_test) > untrained.set_params(layer=0).score(X_test)
    assert trained.score(X_test) < 0
    costs = trained.pretrain_loss_curves_
    assert [len(c) for c in costs] == [3, 3] and costs[0][-1] < costs[0][0]
    loaded = pickle.loads(pickle.dumps(trained))
    assert_array_equal(loaded.transform(X_test), trained.transform(X_test))
    assert loaded.score(X_test) == trained.score(X_test)


@pytest.mark.floats
def test_fit_refuses_data_outside_the_unit_interval_with_the_fix(digits):
    X_train, _, y_train, _ = digits
    with pytest.raises(ValueError, match=r"Values above 1 .*MinMaxScaler"):
        small_classifier().fit(X_train * 16, y_train)
    with pytest.raises(ValueError, match=r"Negative values .*MinMaxScaler"):
        SdATransformer().fit(X_train - 0.5)
    # a rounding error's worth outside [0, 1] is clipped, not refused
    nudged = X_train.astype(np.float32)  # float32: validation passes the caller's array on
    nudged[0, 0], nudged[1, 0] = 1 + 1e-7, -1e-7
    before = nudged.copy()
    fitted = SdATransformer((8,), pretrain_epochs=1, random_state=0)
    assert_array_equal(fitted.fit_transform(nudged), fitted.fit_transform(np.clip(nudged, 0, 1)))
    assert_array_equal(nudged, before)  # clipped in a copy, never in the caller's array


@pytest.mark.floats
def test_new_rows_may_hold_any_finite_values_and_are_clipped(digits):
    X_train, X_test, y_train, _ = digits
    model = small_classifier(max_iter=2).fit(X_train, y_train)
    far_out = (X_test - 0.5) * 3  # from -1.5 to 1.5
    before = far_out.copy()
    clipped = np.clip(far_out, 0, 1)
    assert_array_equal(model.predict_proba(far_out), model.predict_proba(clipped))
    assert model.score(far_out, model.predict(clipped)) == 1.0
    assert_array_equal(far_out, before)  # clipped in a copy, never in the caller's array
    transformer = SdATransformer((8,), pretrain_epochs=1, random_state=0).fit(X_train)
    assert_array_equal(transformer.transform(far_out), transformer.transform(clipped))
    assert transformer.score(far_out) == transformer.score(clipped)


def test_cross_validation_behind_an_unclipped_scaler_scores_every_fold():
    X, y = load_digits(return_X_y=True)
    pipeline = make_pipeline(
        MinMaxScaler(),
        SdAClassifier(hidden_layer_sizes=(64,), pretrain_epochs=2, max_iter=10, random_state=0),
    )
    scores = cross_val_score(pipeline, X, y, cv=3)
    # held-out pixels brighter than any in the other folds reach 1.07 after scaling
    assert np.all(np.isfinite(scores)) and scores.min() > 0.85  # 0.92 to 0.94 here; chance is 0.1


@pytest.mark.parametrize(
    "bad, kind",
    [
        (np.nan, "NaN"),
        (np.inf, "infinity or a value too large for float32"),
        (1e39, "infinity or a value too large for float32"),
    ],
)
def test_nan_and_infinity_are_refused_in_one_line(digits, bad, kind):
    X_train, X_test, y_train, _ = digits
    broken = X_train.copy()
    broken[3, 5] = bad
    expected = (
        f"Input X contains {kind} (first at row 3, column 5): {{name}} needs finite values; drop or "
        "impute them, e.g. make_pipeline(SimpleImputer(), MinMaxScaler(), {name}(...))"
    )
    classifier, transformer = small_classifier(max_iter=2), SdATransformer((8,), pretrain_epochs=1)
    for model, call in [
        (classifier, lambda: classifier.fit(broken, y_train)),
        (transformer, lambda: transformer.fit(broken)),
    ]:
        with pytest.raises(ValueError) as error:
            call()
        assert str(error.value) == expected.format(name=type(model).__name__)
    classifier.fit(X_train, y_train)
    transformer.fit(X_train)
    for method in (classifier.predict, classifier.predict_proba, transformer.transform, transformer.score):
        with pytest.raises(ValueError) as error:
            method(broken)
        assert str(error.value) == expected.format(name=type(method.__self__).__name__)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(solver="adam"), "solver must be one of 'sgd', 'cg', 'lbfgs', got 'adam'"),
        (dict(hidden_layer_sizes=(8, 8), corruption_levels=(0.1, 0.2, 0.3)), "one level per layer"),
        (dict(corruption_levels=1.0), "corruption_levels"),
        (dict(validation_fraction=1.0), "validation_fraction"),
        (dict(hidden_layer_sizes=()), "hidden_layer_sizes must hold at least 1 value"),
        (dict(loss="hinge"), "loss must be one of 'cross_entropy', 'squared', got 'hinge'"),
        # NaN passes every comparison; it must not reach training as a diverging run
        (dict(alpha=float("nan")), "alpha must be at least 0, got nan"),
        (dict(learning_rate_init=float("inf")), "learning_rate_init must be more than 0, got inf"),
        (dict(momentum=float("nan")), "momentum must be in \\[0, 1\\), got nan"),
        (dict(hidden_dropout=1.0), "hidden_dropout must be in \\[0, 1\\), got 1.0"),
        (dict(input_dropout=-0.1), "input_dropout must be in \\[0, 1\\), got -0.1"),
        (dict(max_norm=0.0), "max_norm must be more than 0, got 0.0"),
        (dict(solver="cg", hidden_dropout=0.5), "hidden_dropout apply only to solver='sgd'"),
        (dict(solver="lbfgs", max_norm=3.0), "max_norm apply only to solver='sgd'"),
    ],
)
def test_bad_settings_fail_before_training(digits, settings, message):
    X_train, _, y_train, _ = digits
    with pytest.raises(ValueError, match=message):
        small_classifier(**settings).fit(X_train, y_train)


@pytest.mark.parametrize("estimator", [SdAClassifier, SdATransformer])
@pytest.mark.parametrize(
    "setting, value",
    [
        ("tied", "no"),
        ("tied", 0),
        ("loss", "hinge"),
        ("loss", None),
        ("corruption_levels", (1.0,)),
        ("hidden_layer_sizes", (2.5,)),
    ],
)
def test_settings_the_sda_takes_too_are_refused_in_its_words(digits, estimator, setting, value):
    """The same check as SdA's constructor: the same error type and the same message."""
    sda_name = {"hidden_layer_sizes": "hidden_layers_sizes"}.get(setting, setting)
    sda_settings = dict(n_ins=4, hidden_layers_sizes=(3,), n_outs=2, corruption_levels=(0.1,))
    with pytest.raises((SettingError, SettingTypeError)) as by_sda:
        SdA(np.random.RandomState(0), **{**sda_settings, sda_name: value})
    with pytest.raises(type(by_sda.value)) as by_estimator:
        estimator(**{setting: value}).fit(digits[0][:40], digits[2][:40])
    assert str(by_estimator.value) == str(by_sda.value).replace(sda_name, setting)


@pytest.mark.parametrize(
    "settings, kind, message",
    [
        (dict(solver="Adam"), SettingError, "solver must be one of 'sgd', 'cg', 'lbfgs', got 'Adam'"),
        (dict(verbose="no"), SettingTypeError, "verbose must be True or False, got 'no' (str)"),
        (dict(verbose=-1), SettingError, "verbose must be at least 0, got -1"),
    ],
)
def test_choice_and_flag_settings_are_refused_not_coerced(digits, settings, kind, message):
    with pytest.raises(kind) as error:
        small_classifier(**settings).fit(digits[0], digits[2])
    assert str(error.value) == message
    small_classifier(verbose=2, max_iter=1, pretrain_epochs=0).fit(digits[0][:100], digits[2][:100])


class _Edited:
    """Pickles as ``estimator`` with its pickled state changed by ``edit``."""

    def __init__(self, estimator, edit):
        self.state = estimator.__getstate__()
        self.state["_weights"] = {name: value.copy() for name, value in self.state["_weights"].items()}
        edit(self.state["_weights"])
        self.cls = type(estimator)

    def __reduce__(self):
        # how protocols 0 and 1 pickle the estimator: a bare instance, then __setstate__(state)
        return copyreg._reconstructor, (self.cls, object, None), self.state


@pytest.mark.floats
@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda w: w.update({"hidden0.W": w["hidden0.W"][:, :4]}),
            "unpickled {name}: hidden0.W has shape (64, 4), the model expects (64, 8)",
        ),
        (
            lambda w: w.update({"logistic.W": w["logistic.W"].astype(np.int64)}),
            "unpickled {name}: logistic.W holds int64 values, not usable weights",
        ),
        (
            lambda w: w["hidden0.b"].__setitem__(2, np.nan),
            "unpickled {name}: hidden0.b holds non-finite values",
        ),
        (
            lambda w: w.update({"hidden0.b": w["hidden0.b"].tolist()}),
            "unpickled {name}: hidden0.b is a list, not an array, not usable weights",
        ),
        (
            lambda w: w.pop("dA0.bvis"),
            "unpickled {name} does not fit this model (missing ['dA0.bvis'], unexpected []",
        ),
        (
            lambda w: w.update({"dA0.W_prime": w["hidden0.W"].T}),
            "unpickled {name} does not fit this model (missing [], unexpected ['dA0.W_prime']",
        ),
    ],
)
@pytest.mark.parametrize(
    "estimator",
    [small_classifier(max_iter=2, hidden_layer_sizes=(8,)), SdATransformer((8,), pretrain_epochs=1)],
    ids=lambda e: type(e).__name__,
)
def test_a_damaged_pickle_is_refused_when_loaded(digits, fitted_on_digits, estimator, edit, message):
    X_train, X_test, y_train, _ = digits
    fitted = fitted_on_digits(estimator)
    output = "transform" if isinstance(fitted, SdATransformer) else "predict_proba"
    intact = pickle.loads(pickle.dumps(_Edited(fitted, lambda weights: None)))
    assert_array_equal(getattr(intact, output)(X_test), getattr(fitted, output)(X_test))
    blob = pickle.dumps(_Edited(fitted, edit))
    with pytest.raises(SdAError) as error:
        pickle.loads(blob)
    assert isinstance(error.value, ValueError)
    assert str(error.value).startswith(message.format(name=type(fitted).__name__))
    assert str(error.value).endswith(
        " the pickle is damaged or was not written by sda; fit the estimator again"
    )


def test_a_batch_larger_than_the_rows_is_clipped_with_a_warning():
    X = np.linspace(0, 1, 40).reshape(20, 2)
    with pytest.warns(UserWarning, match="batch_size=1000 is larger than the 20 training rows"):
        SdATransformer((3,), batch_size=1000, pretrain_epochs=1).fit(X)


def test_transformer_layer_out_of_range(digits):
    with pytest.raises(ValueError, match="layer must be an integer from -2 to 1"):
        SdATransformer((8, 4), layer=2).fit(digits[0])


@pytest.mark.floats
def test_validation_fraction_zero_watches_the_training_error(digits):
    X_train, _, y_train, _ = digits
    model = small_classifier(validation_fraction=0, max_iter=5).fit(X_train, y_train)
    # validating on the rows it trains on: the training accuracy is the best score kept
    # The same rows and parameters: the same count of right answers; one row is worth far more than 1e-6.
    assert model.best_validation_score_ == pytest.approx(model.score(X_train, y_train), abs=1e-6)


def test_too_few_rows_for_a_stratified_split_says_how_to_fix_it():
    X = np.linspace(0, 1, 12).reshape(6, 2)
    with pytest.raises(ValueError, match="validation_fraction=0"):
        small_classifier().fit(X, [0, 0, 0, 0, 0, 1])
    assert small_classifier(validation_fraction=0, max_iter=2).fit(X, [0, 0, 0, 0, 0, 1]).n_iter_ >= 1


def test_docstring_examples():
    result = doctest.testmod(sda.estimators, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 8 and result.failed == 0


def test_comparison_script_runs_every_model(tmp_path):
    out = tmp_path / "compare.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.sklearn_compare", "--quick", "--datasets", "digits", "--out", str(out)],
        cwd=Path(__file__).resolve().parents[1],
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    (digits,) = json.loads(out.read_text())["datasets"]
    assert (digits["name"], digits["n_train"], digits["n_test"]) == ("digits", 898, 899)
    names = [row["model"] for row in digits["models"]]
    assert {"SdAClassifier (sgd)", "MLPClassifier (adam)", "BernoulliRBM + LogisticRegression"} <= set(names)
    for row in digits["models"]:
        assert 0.1 < row["accuracy"] <= 1 and row["fit_seconds"] > 0
        assert f"| {row['model']} | {row['accuracy']:.4f} |" in done.stdout  # the printed table


def squared_weights(model):
    return sum(float(np.sum(w**2)) for name, w in model._fitted().weights().items() if name.endswith(".W"))


@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
def test_alpha_shrinks_the_weights(digits, solver):
    X_train, _, y_train, _ = digits
    # no pre-training: only fine-tuning's penalty (lbfgs) or weight decay (sgd) differs
    free, decayed = (
        small_classifier(solver=solver, pretrain_epochs=0, max_iter=10, alpha=alpha).fit(X_train, y_train)
        for alpha in (0.0, 0.01)
    )
    assert squared_weights(decayed) < 0.9 * squared_weights(free)


def test_verbose_prints_every_epoch(digits, capsys):
    X_train, _, y_train, _ = digits
    model = small_classifier(max_iter=3, n_iter_no_change=5, verbose=True).fit(X_train, y_train)
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("pre-train layer 0 epoch") for line in lines) == 2
    assert sum(line.startswith("fine-tune epoch") for line in lines) == model.n_iter_ == 3


def column_norms(model):
    weights = model._fitted().weights()
    return {name: np.sqrt((w**2).sum(axis=0)) for name, w in weights.items() if name.endswith(".W")}


def test_max_norm_bounds_every_units_incoming_weights(digits):
    X_train, _, y_train, _ = digits
    free = column_norms(small_classifier().fit(X_train, y_train))
    bounded = column_norms(small_classifier(max_norm=1.0).fit(X_train, y_train))
    assert max(n.max() for n in free.values()) > 1.5  # the bound binds
    # float32 rounding of the rescaled columns: a few units in the last place
    assert all(n.max() <= 1.0 + 1e-5 for n in bounded.values())


def test_dropout_changes_training_and_keeps_the_same_seed_the_same(digits):
    X_train, X_test, y_train, _ = digits
    plain = small_classifier().fit(X_train, y_train).predict_proba(X_test)
    dropped = [
        small_classifier(input_dropout=0.2, hidden_dropout=0.5).fit(X_train, y_train).predict_proba(X_test)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(dropped[0], dropped[1])
    assert not np.allclose(plain, dropped[0], atol=1e-3)
