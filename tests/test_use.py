"""Using a trained run: model.npz's metadata, sda.load_run, python -m sda.predict and sda.encode,
and the estimators' from_run, on one demo run trained by the command line."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytensor
import pytest
from PIL import Image

import sda
from sda import SdAClassifier, SdATransformer, load_model, load_run
from sda.data import load_dataset, shared_dataset
from sda.encode import main as encode_main
from sda.errors import SdAError
from sda.predict import main as predict_main
from sda.rundir import METADATA_KEY
from sda.trained import MODEL_FORMAT


def command(module, *args):
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def run_folder(demo_run_copy):
    return demo_run_copy


@pytest.fixture(scope="module")
def trained(run_folder):
    return load_run(run_folder)


@pytest.fixture(scope="module")
def test_split():
    return load_dataset("digits").test


def grey(rows):
    """Digits rows (levels k/16) as the 8-bit grey 8x8 images a user would save."""
    return np.round(np.reshape(rows, (-1, 8, 8)) * 255).astype(np.uint8).squeeze()


def stored(path):
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def one_error_line(capsys):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


# ------------------------------------------------------------------ the model file
def test_model_npz_records_its_architecture(run_folder):
    metadata = json.loads(stored(run_folder / "model.npz")[METADATA_KEY].item())
    config = json.loads((run_folder / "config.json").read_text())
    assert metadata["format"] == MODEL_FORMAT and metadata["sda_version"] == sda.__version__
    assert metadata["architecture"] == {
        "n_ins": 64,
        "hidden_layers_sizes": config["hidden_layers"],
        "n_outs": 10,
        "corruption_levels": config["corruption_levels"],
        "tied": config["tied"],
        "loss": config["loss"],
        "activation": "sigmoid",
    }
    assert metadata["classes"] == list(range(10))
    assert metadata["input"] == {"dataset": "digits", "image_shape": [8, 8], "pixel_scale": [16, 16]}


@pytest.mark.floats
def test_a_model_npz_loads_without_its_folder(run_folder, trained, tmp_path, test_split):
    alone = tmp_path / "elsewhere.npz"
    shutil.copy(run_folder / "model.npz", alone)
    model = load_model(alone)
    assert model.settings is None and model.architecture == trained.architecture
    np.testing.assert_array_equal(model.predict(test_split.x), trained.predict(test_split.x))


@pytest.mark.floats
def test_load_run_gives_the_runs_test_error(trained, test_split):
    assert trained.settings["hidden_layers"] == [100, 100] and trained.summary["status"] == "done"
    error = np.mean(trained.predict(test_split.x) != test_split.y)
    # The run's own scorer, compiled on the shared test split as sda.run compiles it.
    x, y = shared_dataset(test_split)
    scorer = trained.model.error_scorer(x, y, trained.settings["eval_batch_size"])
    # Another compilation may differ in the last bits of a logit, which flips an argmax only
    # at a near-tie: one row moves the error by 1/300, far above the tolerance.
    assert error == pytest.approx(scorer.error(), abs=1e-6)
    assert error == pytest.approx(trained.summary["test_error"], abs=1e-6)


# ------------------------------------------------------------------ the commands
@pytest.mark.floats
def test_predict_on_pngs_gives_load_runs_labels(run_folder, trained, test_split, tmp_path):
    paths = []
    for i, row in enumerate(test_split.x):
        Image.fromarray(grey(row)).save(tmp_path / f"{i:03d}.png")
        paths.append(tmp_path / f"{i:03d}.png")
    # the images give back exactly the rows: grey levels are scaled as sda.data scaled the digits
    assert np.array_equal(trained.from_grey(grey(test_split.x)).reshape(-1, 64), test_split.x)
    done = command("sda.predict", run_folder, *paths, "--json")
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    labels = np.array([r["label"] for r in results])
    np.testing.assert_array_equal(labels, trained.predict(test_split.x))
    assert np.mean(labels != test_split.y) == pytest.approx(trained.summary["test_error"], abs=1e-6)
    assert [r["input"] for r in results] == [str(p) for p in paths]
    assert all(r["row"] is None and not r["inverted"] and 0 < r["probability"] <= 1 for r in results)


def test_predict_prints_a_line_per_image_and_array_row(run_folder, trained, test_split, tmp_path, capsys):
    Image.fromarray(grey(test_split.x[0])).save(tmp_path / "a.png")
    np.save(tmp_path / "rows.npy", test_split.x[:3])
    np.savez(tmp_path / "images.npz", images=grey(test_split.x[:2]))
    assert (
        predict_main(
            [
                str(run_folder),
                str(tmp_path / "a.png"),
                str(tmp_path / "rows.npy"),
                str(tmp_path / "images.npz"),
                "--top",
                "3",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    labels = trained.predict(test_split.x[:3])
    proba = trained.predict_proba(test_split.x[:3])
    assert [line.split(": ")[0] for line in lines] == [
        str(tmp_path / "a.png"),
        *(f"{tmp_path / 'rows.npy'}[{i}]" for i in range(3)),
        *(f"{tmp_path / 'images.npz'}[{i}]" for i in range(2)),
    ]
    assert lines[1] == f"{tmp_path / 'rows.npy'}[0]: " + ", ".join(
        f"{k} ({proba[0][k]:.3f})" for k in np.argsort(-proba[0], kind="stable")[:3]
    )
    assert [int(line.split(": ")[1].split(" ")[0]) for line in lines] == [labels[0], *labels, *labels[:2]]


def test_a_dark_digit_on_white_is_inverted_with_a_note(run_folder, trained, test_split, tmp_path, capsys):
    Image.fromarray(255 - grey(test_split.x[0])).save(tmp_path / "black-on-white.png")
    assert predict_main([str(run_folder), str(tmp_path / "black-on-white.png"), "--json"]) == 0
    out, err = capsys.readouterr()
    (result,) = json.loads(out)
    assert result["inverted"] and result["label"] == trained.predict(test_split.x[:1])[0]
    assert err.startswith("note: ") and "inverted it" in err and err.count("\n") == 1


@pytest.mark.floats
def test_encode_writes_the_layers_code(run_folder, trained, test_split, tmp_path):
    np.save(tmp_path / "rows.npy", test_split.x[:20])
    out = tmp_path / "codes" / "layer0.npy"
    done = command("sda.encode", run_folder, tmp_path / "rows.npy", "--layer", 0, "--out", out)
    assert done.returncode == 0, done.stderr
    codes = np.load(out, allow_pickle=False)
    assert codes.shape == (20, 100) and codes.dtype == np.float32
    own = pytensor.function([trained.model.x], trained.model.sigmoid_layers[0].output)
    np.testing.assert_allclose(codes, own(test_split.x[:20]), rtol=1e-5, atol=1e-6)
    top = trained.encode(test_split.x[:20], -1)
    np.testing.assert_allclose(top, trained.encode(test_split.x[:20], 1))
    assert top.shape == (20, 100)


def test_encode_keeps_an_existing_file_unless_told(run_folder, test_split, tmp_path, capsys):
    np.save(tmp_path / "rows.npy", test_split.x[:2])
    out = tmp_path / "codes.npy"
    out.write_bytes(b"earlier")
    args = [str(run_folder), str(tmp_path / "rows.npy"), "--out", str(out)]
    assert encode_main(args) == 2
    assert "exists already" in one_error_line(capsys) and out.read_bytes() == b"earlier"
    assert encode_main([*args, "--overwrite"]) == 0
    assert np.load(out).shape == (2, 100)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--layer", "2"], "--layer 2 does not exist: this model has 2 hidden layers, numbered 0 to 1"),
        (["--layer", "-3"], "--layer -3 does not exist"),
        (["--out-name", "codes.txt"], "must end in .npy"),
        (["--input", "missing.npy"], "missing.npy does not exist"),
    ],
)
def test_encode_refusals_write_nothing(run_folder, test_split, tmp_path, capsys, args, message):
    np.save(tmp_path / "rows.npy", test_split.x[:2])
    given = dict(zip(args[::2], args[1::2]))
    out = tmp_path / given.pop("--out-name", "codes.npy")
    inputs = str(tmp_path / given.pop("--input", "rows.npy"))
    extra = [item for pair in given.items() for item in pair]
    assert encode_main([str(run_folder), inputs, "--out", str(out), *extra]) == 2
    assert message in one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.npy"]


def _text_as_png(path):
    path.write_text("not an image")


def _mnist_sized(path):
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(path)


@pytest.mark.parametrize(
    "name, make, message",
    [
        ("missing.png", None, "missing.png does not exist; check the path"),
        ("text.png", _text_as_png, "is neither an image Pillow can read nor a .npy/.npz array"),
        ("big.png", _mnist_sized, "is 28x28 pixels; this model takes 8x8 grey-scale images, like its digits"),
        ("nan.npy", lambda p: np.save(p, np.full((2, 64), np.nan)), "holds NaN or infinite values"),
        (
            "dims.npy",
            lambda p: np.save(p, np.zeros((3, 10))),
            "has shape (3, 10); this model takes rows of 64",
        ),
        ("cube.npy", lambda p: np.save(p, np.zeros((2, 2, 4, 8))), "has shape (2, 2, 4, 8)"),
        ("range.npy", lambda p: np.save(p, np.full((1, 64), 16.0)), "values from 16 to 16; this model takes"),
        ("empty.npy", lambda p: np.save(p, np.zeros((0, 64))), "holds no values (its shape is (0, 64))"),
        ("two.npz", lambda p: np.savez(p, a=np.zeros(64), b=np.zeros(64)), "holds 2 arrays ['a', 'b']"),
        ("pickled.npy", lambda p: np.save(p, np.array([{}]), allow_pickle=True), "is not a valid .npy array"),
    ],
)
def test_bad_inputs_are_one_line_and_exit_2(run_folder, tmp_path, capsys, name, make, message):
    if make is not None:
        make(tmp_path / name)
    np.save(tmp_path / "good.npy", np.zeros((1, 64)))
    # the good input first: nothing is printed for it, as every input is checked before any work
    assert predict_main([str(run_folder), str(tmp_path / "good.npy"), str(tmp_path / name)]) == 2
    assert message in one_error_line(capsys)
    assert capsys.readouterr().out == ""


def test_top_must_be_a_number_of_classes(run_folder, tmp_path, capsys):
    np.save(tmp_path / "good.npy", np.zeros((1, 64)))
    for top in ("0", "11"):
        assert predict_main([str(run_folder), str(tmp_path / "good.npy"), "--top", top]) == 2
        assert f"--top {top} is not a number of labels from 1 to the model's 10 classes" in one_error_line(
            capsys
        )


# ------------------------------------------------------------------ refused model files
def _resave(path, **change):
    """Rewrite the npz at ``path`` with entries replaced (None: removed)."""
    arrays = stored(path)
    for name, value in change.items():
        name = name.replace("__", ".")
        if value is None:
            del arrays[name]
        else:
            arrays[name] = value(arrays[name]) if callable(value) else value
    np.savez(path, **arrays)


def _metadata(**change):
    def edit(entry):
        metadata = json.loads(entry.item())
        metadata.update(change)
        return np.array(json.dumps(metadata))

    return edit


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_bytes(p.read_bytes()[:500]), "is not a valid saved model file: it is damaged"),
        (lambda p: p.write_bytes(b""), "is not a valid saved model file: it is empty"),
        (
            lambda p: _resave(p, hidden1__b=None),
            "does not fit this model (missing ['hidden1.b'], unexpected "
            "[]): its weights do not match the architecture it records",
        ),
        (
            lambda p: _resave(p, hidden0__W=lambda w: w.T),
            "hidden0.W has shape (100, 64), the model expects (64, 100): "
            "its weights do not match the architecture",
        ),
        (lambda p: _resave(p, logistic__b=lambda b: b.astype(np.int64)), "logistic.b holds int64 values"),
        (lambda p: _resave(p, hidden0__b=lambda b: b * np.nan), "hidden0.b holds non-finite values"),
        (
            lambda p: _resave(p, metadata__json=_metadata(format=MODEL_FORMAT + 1, sda_version="9.0")),
            f"it is a format-{MODEL_FORMAT + 1} model file written by sda 9.0, and this sda "
            f"{sda.__version__} reads format {MODEL_FORMAT}; upgrade sda",
        ),
        (lambda p: _resave(p, metadata__json=np.array("{not json")), "metadata.json is not valid JSON"),
        (lambda p: _resave(p, metadata__json=np.zeros(3)), "metadata.json holds a float64 array"),
        (
            lambda p: _resave(p, metadata__json=_metadata(architecture={"n_ins": 64})),
            "metadata.json lacks some of the architecture",
        ),
        (
            lambda p: _resave(p, metadata__json=_metadata(classes=[1, 2])),
            "its class labels [1, 2] are not 10",
        ),
    ],
)
def test_a_bad_model_file_is_one_line_naming_it(run_folder, tmp_path, capsys, damage, message):
    folder = tmp_path / "run"
    shutil.copytree(run_folder, folder)
    damage(folder / "model.npz")
    np.save(tmp_path / "good.npy", np.zeros((1, 64)))
    assert predict_main([str(folder), str(tmp_path / "good.npy")]) == 2
    err = one_error_line(capsys)
    assert message in err and str(folder / "model.npz") in err
    with pytest.raises(SdAError, match="model.npz"):
        load_run(folder)


def test_a_model_of_another_architecture_is_refused(run_folder, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(run_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_layers": [50, 50]}))
    with pytest.raises(
        SdAError,
        match=r"model.npz does not match .*config.json: hidden_layers is "
        r"\(100, 100\) in the model and \(50, 50\) in the settings",
    ):
        load_run(folder)


def test_a_folder_without_a_model_says_why(run_folder, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(run_folder, folder)
    (folder / "model.npz").unlink()
    (folder / "summary.json").write_text(json.dumps({"status": "interrupted"}))
    with pytest.raises(SdAError, match="holds no model.npz: the run is interrupted .* --resume"):
        load_run(folder)
    with pytest.raises(SdAError, match="does not exist: give the folder of a run"):
        load_run(tmp_path / "nowhere")


@pytest.mark.floats
def test_an_older_model_npz_loads_through_its_config(run_folder, trained, tmp_path, test_split):
    folder = tmp_path / "run"
    shutil.copytree(run_folder, folder)
    _resave(folder / "model.npz", metadata__json=None)  # as sda wrote it before the metadata
    older = load_run(folder)
    assert older.architecture == trained.architecture and older.pixel_scale == (16, 16)
    assert older.image_shape == (8, 8)
    np.testing.assert_array_equal(older.predict(test_split.x), trained.predict(test_split.x))
    with pytest.raises(SdAError, match="holds no metadata.json .* load its run folder with sda.load_run"):
        load_model(folder / "model.npz")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "tied": False}))
    with pytest.raises(SdAError, match=r"unexpected \[\]\): its weights do not match its run's config.json"):
        load_run(folder)


# ------------------------------------------------------------------ scikit-learn
@pytest.mark.floats
def test_from_run_estimators_use_the_runs_model(run_folder, trained, test_split):
    classifier = SdAClassifier.from_run(run_folder)
    np.testing.assert_array_equal(classifier.predict(test_split.x), trained.predict(test_split.x))
    assert 1 - classifier.score(test_split.x, test_split.y) == pytest.approx(
        trained.summary["test_error"], abs=1e-6
    )
    np.testing.assert_allclose(classifier.predict_proba(test_split.x[:5]).sum(axis=1), 1)
    assert list(classifier.classes_) == list(range(10))
    transformer = SdATransformer.from_run(run_folder, layer=0)
    np.testing.assert_allclose(
        transformer.transform(test_split.x[:10]), trained.encode(test_split.x[:10], 0), rtol=1e-5, atol=1e-6
    )
    assert transformer.score(test_split.x) < 0
