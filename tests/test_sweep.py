"""``python -m sda.sweep``: the search-space file, pruning through ``on_epoch``,
the summary, and killed workers on a journal file and on a real PostgreSQL."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sda import sweep

REPO = Path(__file__).resolve().parents[1]
PG_BIN = Path(os.environ.get("SDA_PG_BIN", "/usr/lib/postgresql/15/bin"))

# Tiny trials on the bundled digits; both searched fields are inputs of the
# compiled functions or initial values, so no trial compiles anything new.
FAST_SPACE = """
[sweep]
trials = 3
seed = 1
pruner = "none"
startup_trials = 1

[fixed]
preset = "demo"
pretrain_epochs = 1
finetune_epochs = 3
hidden_layers = [50, 50]
checkpoint_every = 0

[search]
pretrain_lr = { low = 0.001, high = 0.1, log = true }
seed = { low = 1, high = 1000 }
"""


def write(path, text):
    path.write_text(text)
    return path


# ------------------------------------------------------------- search space
def test_demo_space_reads_and_every_param_type_suggests():
    space = sweep.load_space(REPO / "sweeps" / "demo.toml")
    assert space.fixed["preset"] == "demo"
    kinds = {p.name: p.kind for p in space.params}
    assert kinds == {
        "finetune_lr": "float",
        "momentum": "float",
        "pretrain_lr": "float",
        "finetune_batch_size": "int",
        "corruption_levels": "categorical",
    }
    trial = optuna.trial.FixedTrial(
        {
            "finetune_lr": 0.3,
            "momentum": 0.5,
            "pretrain_lr": 0.01,
            "finetune_batch_size": 12,
            "corruption_levels": "[0.2, 0.3]",
        }
    )
    config = space.config(space.suggest(trial))
    # The list choice comes back as the tuple RunConfig holds; fixed fields and the preset apply.
    assert config.corruption_levels == (0.2, 0.3) and config.finetune_batch_size == 12
    assert config.dataset == "digits" and config.pretrain_epochs == 2 and config.preset == "demo"


@pytest.mark.parametrize(
    "search, fixed, expected",
    [
        ("learning_rate = { low = 0.1, high = 1.0 }", "", "'learning_rate' is not a RunConfig field"),
        ("finetune_lr = { low = 1.0, high = 0.1 }", "", "needs numbers low < high"),
        ("finetune_lr = { low = 0.0, high = 1.0, log = true }", "", "a log range needs low > 0"),
        ("finetune_lr = { low = 0.1 }", "", "needs low and high"),
        ("finetune_batch_size = { low = 5.5, high = 40 }", "", "whole-number bounds for an int field"),
        ("loss = { choices = [] }", "", "choices must be a non-empty list"),
        ("loss = { choices = [1, 2] }", "", "have the wrong type"),
        ("tied = { low = 0, high = 1 }", "", "use choices"),
        ("momentum = { low = 0.0, high = 1.0 }", "", "momentum must be in [0, 1), got 1.0"),
        (
            "hidden_layers = { choices = [[50, 50, 50]] }",
            "",
            "corruption_levels has 2 values but there are 3 hidden layers",
        ),
        ("out = { choices = ['a', 'b'] }", "", "out cannot be searched"),
        ("momentum = { low = 0.0, high = 0.5 }", "momentum = 0.9", "both fixed and searched"),
        ("momentum = { low = 0.0, high = 0.5 }", "name = 'x'", "set by the sweep"),
        ("momentum = { low = 0.0, high = 0.5 }", "n_train = 'many'", "wrong type"),
        (
            "momentum = { low = 0.0, high = 0.5 }",
            "dataset = 'mnsit'",
            "[fixed] dataset must be one of 'mnist', ",
        ),
        # a clash inside [fixed] is blamed on [fixed], not on the first [search] range tried with it
        (
            "momentum = { low = 0.0, high = 0.5 }",
            "hidden_layers = [50, 50, 50]",
            "[fixed] gives an invalid run, whatever [search] chooses: "
            "corruption_levels has 2 values but there are 3 hidden layers",
        ),
    ],
)
def test_bad_space_is_one_line_and_makes_no_folder(tmp_path, capsys, search, fixed, expected):
    space = write(tmp_path / "bad.toml", f"[fixed]\npreset = 'demo'\n{fixed}\n[search]\n{search}\n")
    out = tmp_path / "out"
    assert sweep.main([str(space), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert expected in error and error.count("\n") == 1, error
    assert not out.exists()


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "[sweep]\npruner = 'hyperband'\n[search]\nseed = {low = 1, high = 9}",
            "[sweep] pruner must be one of 'median', 'none', got 'hyperband'",
        ),
        (
            "[sweep]\ntrails = 3\n[search]\nseed = {low = 1, high = 9}",
            "unknown [sweep] setting(s) ['trails']",
        ),
        ("[serach]\nseed = {low = 1, high = 9}", "unknown table(s) ['serach']"),
        ("[fixed]\npreset = 'demo'", "[search] is empty"),
        # a misspelt preset is blamed on itself, not on the first [search] range tried with it
        (
            "[fixed]\npreset = 'dmeo'\n[search]\nseed = {low = 1, high = 9}",
            "[fixed] preset must be one of 'default', 'classic', 'tutorial', 'demo', got 'dmeo'",
        ),
        ("[search\n", "is not valid TOML"),
    ],
)
def test_bad_sweep_settings_are_refused(tmp_path, text, expected):
    with pytest.raises(sweep.SweepError) as caught:
        sweep.load_space(write(tmp_path / "bad.toml", text))
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "is missing"),
        (b"\x00\xff\xfe", "is not a text file"),
    ],
)
def test_a_missing_or_binary_space_file_is_one_line(tmp_path, capsys, content, expected):
    space = tmp_path / "space.toml"
    if content is not None:
        space.write_bytes(content)
    assert sweep.main([str(space), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert expected in error and str(space) in error and error.count("\n") == 1, error
    assert not (tmp_path / "out").exists()


def test_an_out_that_is_a_file_is_one_line(tmp_path, capsys):
    space, out = write(tmp_path / "fast.toml", FAST_SPACE), write(tmp_path / "out", "")
    assert sweep.main([str(space), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert f"--out {out} cannot be a folder: it or a folder above it is a file" in error
    assert error.count("\n") == 1 and out.read_text() == ""


def test_a_range_beyond_the_data_is_refused_before_the_sweep_starts(tmp_path, capsys):
    text = FAST_SPACE.replace(
        "seed = { low = 1, high = 1000 }", "finetune_batch_size = { low = 5, high = 1000000000000 }"
    )
    out = tmp_path / "out"
    assert sweep.main([str(write(tmp_path / "bs.toml", text)), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert (
        error.count("\n") == 1
        and "[search] finetune_batch_size = 1000000000000 gives an invalid run: "
        "finetune_batch_size 1000000000000 is larger than the 1197 training rows"
        in error
    )
    assert not out.exists()


def test_a_trial_failing_with_a_user_error_is_marked_failed_and_the_sweep_goes_on(tmp_path, capsys):
    # past the checks of sweep(): the second line of defence, in every trial
    text = FAST_SPACE.replace(
        "seed = { low = 1, high = 1000 }", "finetune_batch_size = { low = 100000, high = 1000000000000 }"
    )
    space = sweep.load_space(write(tmp_path / "bs.toml", text))  # reads the file; knows no data
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    sweep.optimise(study, space, tmp_path, trials=2, shared=False)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 2
    assert all("training rows: use at most 1197" in t.user_attrs["error"] for t in study.trials)
    assert "Traceback" not in "".join(capsys.readouterr())


def test_a_diverging_trial_is_marked_failed_in_the_table_and_the_sweep_goes_on(tmp_path):
    text = FAST_SPACE.replace(
        "pretrain_lr = { low = 0.001, high = 0.1, log = true }",
        "pretrain_lr = { low = 1e5, high = 1e6, log = true }",
    )
    out = tmp_path / "out"
    assert sweep.main([str(write(tmp_path / "div.toml", text)), "--out", str(out), "--trials", "2"]) == 0
    rows = (out / "trials.csv").read_text().splitlines()[1:]
    assert len(rows) == 2 and all(",fail," in row and "pre-training layer 0 diverged" in row for row in rows)
    summary = (out / "summary.md").read_text()
    assert "trials: 2 fail" in summary
    assert summary.count("TrainingDiverged: pre-training layer 0 diverged") == 2
    for trial in ("trial-0000", "trial-0001"):
        assert json.loads((out / "runs" / trial / "summary.json").read_text())["status"] == "diverged"


def test_a_damaged_journal_is_one_line(tmp_path, capsys):
    space, out = write(tmp_path / "fast.toml", FAST_SPACE), tmp_path / "out"
    out.mkdir()
    (out / "journal.log").write_bytes(bytes(range(256)) * 4)
    assert sweep.main([str(space), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert (
        error.count("\n") == 1
        and f"{out / 'journal.log'} is damaged (not an Optuna journal): move it aside" in error
    )


def test_a_journal_cut_short_by_a_killed_writer_is_repaired_and_the_sweep_continues(tmp_path):
    space, out = write(tmp_path / "fast.toml", FAST_SPACE), tmp_path / "out"
    assert sweep.main([str(space), "--out", str(out), "--trials", "1"]) == 0
    journal = out / "journal.log"
    whole = journal.read_bytes()
    cut = whole + whole.splitlines(keepends=True)[-1][:40]  # a writer killed 40 bytes into a line
    journal.write_bytes(cut)
    assert sweep.main([str(space), "--out", str(out), "--trials", "2"]) == 0
    assert (out / "journal.log.cut").read_bytes() == cut  # the original, kept
    study = optuna.load_study(
        study_name="fast",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal))),
    )
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2


def test_unreachable_database_is_one_line(tmp_path, capsys):
    space = write(tmp_path / "s.toml", FAST_SPACE)
    url = f"postgresql://nobody@/nothing?host={tmp_path}&port=1"  # no server behind this socket
    assert sweep.main([str(space), "--storage", url, "--out", str(tmp_path / "out")]) == 2
    assert "cannot open the database" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_changed_space_is_refused_for_an_existing_study(tmp_path):
    storage = optuna.storages.InMemoryStorage()
    space = sweep.load_space(write(tmp_path / "s.toml", FAST_SPACE))
    sweep.open_study(space, storage, "s")
    other = sweep.load_space(write(tmp_path / "s.toml", FAST_SPACE.replace("high = 1000", "high = 99")))
    with pytest.raises(sweep.SweepError, match="another search space"):
        sweep.open_study(other, storage, "s")


# ------------------------------------------------- pruning, recovery, summary
def test_prune_on_epoch_reports_fine_tuning_and_raises_when_told():
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.5))
    trial = study.ask()
    callback = sweep.PruneOnEpoch(trial)
    callback({"phase": "pretrain", "layer": 0, "epoch": 0, "cost": 3.0})  # not an objective: ignored
    callback(
        {
            "phase": "finetune",
            "epoch": 1,
            "cost": 1.0,
            "valid_error": 0.4,
            "best_valid_error": 0.4,
            "test_error": 0.4,
        }
    )
    with pytest.raises(optuna.TrialPruned, match="epoch 2"):
        callback(
            {
                "phase": "finetune",
                "epoch": 2,
                "cost": 1.0,
                "valid_error": 0.7,
                "best_valid_error": 0.6,
                "test_error": 0.4,
            }
        )
    assert study.trials[0].intermediate_values == {1: 0.4, 2: 0.6}


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # exited and reaped: its pid names no process
    return child.pid


def test_recover_requeues_only_trials_of_dead_workers_on_this_machine():
    study = optuna.create_study()
    distributions = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for worker, x in [
        (f"{socket.gethostname()}:{dead_pid()}", 0.25),
        (f"{socket.gethostname()}:{os.getpid()}", 0.5),  # alive: this process
        ("some-other-machine:1", 0.75),
    ]:  # left to the database's heartbeat
        study.add_trial(
            optuna.trial.create_trial(state=TrialState.WAITING, params={"x": x}, distributions=distributions)
        )
        trial = study.ask()
        trial.set_user_attr("worker", worker)
    # until a worker recovers it, the summary does not call the dead worker's trial running
    notes = [row["note"] for row in sweep.trial_rows(study)]
    assert notes[0].startswith("interrupted: its worker is gone") and notes[1:] == ["", ""]
    assert sweep.recover_interrupted(study) == [0]
    assert sweep.recover_interrupted(study) == []  # a second pass finds nothing more
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.RUNNING, TrialState.RUNNING, TrialState.WAITING]
    retry = study.trials[3]
    assert retry.params == {"x": 0.25} and retry.user_attrs == {"retry_of": 0}
    assert not sweep.counts_as_done(study.trials[0])


def test_ctrl_c_queues_the_stopped_trial_again(tmp_path, monkeypatch):
    def stopped(config, on_epoch=None):
        raise KeyboardInterrupt

    monkeypatch.setattr("sda.run.run", stopped)
    space = sweep.load_space(write(tmp_path / "s.toml", FAST_SPACE))
    study = optuna.create_study()
    with pytest.raises(KeyboardInterrupt):
        study.optimize(sweep.Objective(space, tmp_path), n_trials=1)
    stopped_trial, queued = study.trials
    assert stopped_trial.state == TrialState.FAIL and queued.state == TrialState.WAITING
    assert queued.params == stopped_trial.params and queued.user_attrs == {"retry_of": 0}


def test_summary_table_best_trial_and_plots(tmp_path):
    space = sweep.load_space(write(tmp_path / "s.toml", FAST_SPACE))
    study = optuna.create_study(study_name="s")
    distributions = {
        "pretrain_lr": optuna.distributions.FloatDistribution(0.001, 0.1, log=True),
        "seed": optuna.distributions.IntDistribution(1, 1000),
    }
    values = [0.08, 0.05, 0.07, 0.06]
    for i, value in enumerate(values):
        study.add_trial(
            optuna.trial.create_trial(
                value=value,
                params={"pretrain_lr": 0.001 * (i + 1), "seed": 10 * i + 1},
                distributions=distributions,
                user_attrs={"test_error": value + 0.01, "run_dir": "nowhere"},
            )
        )
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.PRUNED,
            params={"pretrain_lr": 0.02, "seed": 5},
            distributions=distributions,
            intermediate_values={1: 0.3},
        )
    )
    text = sweep.write_summary(study, space, tmp_path, "python -m sda.sweep s.toml")
    assert "## Best trial: #1" in text and "Validation error 5.00 %, test error 6.00 %" in text
    assert "4 complete, 1 pruned" in text
    rows = (tmp_path / "trials.csv").read_text().splitlines()
    assert len(rows) == 1 + 5 and rows[0].startswith("trial,state,valid_error_%,test_error_%")
    assert rows[5].startswith("4,pruned,30.0,")  # a pruned trial shows its last report
    assert (tmp_path / "objective.png").stat().st_size > 0
    assert (tmp_path / "importances.png").stat().st_size > 0
    assert "Parameter importances (" in text


def test_a_trial_is_an_ordinary_run_and_is_pruned_through_on_epoch(tmp_path):
    space = sweep.load_space(write(tmp_path / "s.toml", FAST_SPACE))
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=1e-9))  # prunes at once
    study.optimize(sweep.Objective(space, tmp_path), n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [1]  # stopped after the first fine-tuning epoch
    run_dir = Path(trial.user_attrs["run_dir"])
    config = json.loads((run_dir / "config.json").read_text())
    assert config["pretrain_lr"] == trial.params["pretrain_lr"] and config["seed"] == trial.params["seed"]
    assert config["out"] == str(tmp_path / "runs") and run_dir.name == "trial-0000"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "TrialPruned" in summary["error"]
    finetune_rows = [r for r in (run_dir / "metrics.csv").read_text().splitlines() if "finetune" in r]
    assert len(finetune_rows) == 1


# ------------------------------------------------------ killed workers, end to end
def start_worker(space, out, log, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "sda.sweep", str(space), "--out", str(out), *extra],
        cwd=out.parent,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
    )


def wait_for(condition, what, workers, timeout=600):
    deadline = time.monotonic() + timeout
    while not condition():
        for worker in workers:
            assert worker.poll() is None, f"a worker exited (status {worker.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def running_with_metrics(storage, name, pid):
    """Whether worker ``pid`` is inside a trial that has started training."""
    try:
        trials = optuna.load_study(study_name=name, storage=storage).get_trials(states=(TrialState.RUNNING,))
    except KeyError:  # the study does not exist yet
        return False
    return any(
        t.user_attrs.get("worker") == f"{socket.gethostname()}:{pid}"
        and "run_dir" in t.user_attrs
        and (Path(t.user_attrs["run_dir"]) / "metrics.csv").exists()
        for t in trials
    )


def check_accounted_for(study, trials, killed, most_done):
    """Every trial finished, each killed one re-run exactly once, the runs
    match the study, and the best trial is the best complete one."""
    by_number = {t.number: t for t in study.trials}
    assert not [t.number for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    failed = sorted(t.number for t in study.trials if t.state == TrialState.FAIL)
    assert failed == sorted(killed)
    retries = [t for t in study.trials if "retry_of" in t.user_attrs]
    assert sorted(t.user_attrs["retry_of"] for t in retries) == sorted(killed)  # each once, none lost
    for retry in retries:
        assert retry.params == by_number[retry.user_attrs["retry_of"]].params
        assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED)
    done = [t for t in study.trials if sweep.counts_as_done(t)]
    assert trials <= len(done) <= most_done
    run_dirs = [t.user_attrs["run_dir"] for t in study.trials]
    assert len(set(run_dirs)) == len(run_dirs)  # no run folder shared by two trials
    complete = [t for t in done if t.state == TrialState.COMPLETE]
    for t in complete:
        summary = json.loads((Path(t.user_attrs["run_dir"]) / "summary.json").read_text())
        assert summary["best_valid_error"] == t.value and summary["test_error"] == t.user_attrs["test_error"]
    best = min(complete, key=lambda t: (t.value, t.number))
    assert study.best_value == best.value and study.best_trial.value == best.value


def test_journal_sweep_killed_mid_trial_resumes_with_the_same_command(tmp_path):
    space, out = write(tmp_path / "fast.toml", FAST_SPACE), tmp_path / "sweep"
    journal = lambda: optuna.storages.JournalStorage(  # noqa: E731
        optuna.storages.journal.JournalFileBackend(str(out / "journal.log"))
    )
    worker = start_worker(space, out, tmp_path / "first.log", "--trials", "2")
    try:
        wait_for(lambda: (out / "runs" / "trial-0001" / "metrics.csv").exists(), "trial 1 trains", [worker])
        worker.send_signal(signal.SIGKILL)
    finally:
        worker.kill()
        worker.wait()
    assert optuna.load_study(study_name="fast", storage=journal()).trials[1].state == TrialState.RUNNING

    again = subprocess.run(
        [sys.executable, "-m", "sda.sweep", str(space), "--out", str(out), "--trials", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "re-queued trial(s) [1]" in again.stdout
    study = optuna.load_study(study_name="fast", storage=journal())
    check_accounted_for(study, 2, killed=[1], most_done=2)
    assert study.trials[0].state == TrialState.COMPLETE  # finished before the kill, kept
    assert study.trials[2].user_attrs["retry_of"] == 1  # re-run first, before any new trial
    assert f"## Best trial: #{study.best_trial.number}" in (out / "summary.md").read_text()
    assert len((out / "trials.csv").read_text().splitlines()) == 1 + len(study.trials)


@pytest.fixture(scope="module")
def postgres():
    """A throw-away PostgreSQL cluster on a Unix socket in a temp folder;
    yields its URL and stops the server at the end."""
    if not (PG_BIN / "initdb").exists():
        pytest.fail(
            f"no PostgreSQL server binaries in {PG_BIN}: apt-get install -y postgresql-15 "
            "(or point SDA_PG_BIN at the folder holding initdb and pg_ctl)"
        )
    root = Path(tempfile.mkdtemp(prefix="sda-pg-"))
    as_owner = []
    if os.geteuid() == 0:  # initdb refuses to run as root: the cluster belongs to `postgres`
        shutil.chown(root, "postgres", "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", "5432"  # the socket file lives in `root`: no clash with any server

    def pg(tool, *args):
        subprocess.run([*as_owner, str(PG_BIN / tool), *args], check=True, capture_output=True, timeout=120)

    pg("initdb", "-D", str(data), "--auth=trust", "--username=postgres", "--no-sync", "--encoding=UTF8")
    pg(
        "pg_ctl",
        "-D",
        str(data),
        "-l",
        str(root / "server.log"),
        "-w",
        "-o",
        f"-k {root} -p {port} -c listen_addresses=''",
        "start",
    )
    try:
        pg("createdb", "-h", str(root), "-p", port, "-U", "postgres", "sweep")
        yield f"postgresql+psycopg2://postgres@/sweep?host={root}&port={port}"
    finally:
        pg("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_two_postgres_workers_one_killed_account_for_every_trial(tmp_path, postgres):
    space, out = write(tmp_path / "pg.toml", FAST_SPACE), tmp_path / "sweep"
    out.mkdir()
    command = ["--storage", postgres, "--trials", "2"]
    first = start_worker(space, out, tmp_path / "first.log", *command)
    second = None
    try:
        # The second worker starts once the first has made the study and begun a trial.
        wait_for(lambda: running_with_metrics(postgres, "pg", first.pid), "worker 1 trains", [first])
        second = start_worker(space, out, tmp_path / "second.log", *command)
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert second.wait(timeout=600) == 0, (tmp_path / "second.log").read_text()
    finally:
        for worker in (first, second):
            if worker is not None and worker.poll() is None:
                worker.kill()
                worker.wait()
    # The same command again: a restarted worker finishes whatever is left, if anything.
    again = subprocess.run(
        [sys.executable, "-m", "sda.sweep", str(space), "--out", str(out), *command],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stdout + again.stderr

    study = optuna.load_study(study_name="pg", storage=postgres)
    first_worker = f"{socket.gethostname()}:{first.pid}"
    killed = [t.number for t in study.trials if t.user_attrs.get("worker") == first_worker]
    assert len(killed) == 1  # the first worker died in its first trial
    # Two workers may each start one trial past the target before seeing it reached.
    check_accounted_for(study, 2, killed=killed, most_done=3)
    log = (tmp_path / "second.log").read_text() + again.stdout
    assert f"re-queued trial(s) [{killed[0]}]" in log
    assert f"## Best trial: #{study.best_trial.number}" in (out / "summary.md").read_text()


def test_clashing_choices_fail_one_trial_with_its_reason(tmp_path):
    # Each choice fits the preset's other values, so the file is accepted; together they clash.
    text = FAST_SPACE.replace("hidden_layers = [50, 50]\n", "").replace(
        "seed = { low = 1, high = 1000 }",
        "hidden_layers = { choices = [[50, 50], [50, 50, 50]] }\n"
        "corruption_levels = { choices = [[0.1, 0.2], [0.1, 0.2, 0.3]] }",
    )
    space = sweep.load_space(write(tmp_path / "s.toml", text))
    study = optuna.create_study()
    study.enqueue_trial(
        {"pretrain_lr": 0.01, "hidden_layers": "[50, 50]", "corruption_levels": "[0.1, 0.2, 0.3]"}
    )
    study.optimize(sweep.Objective(space, tmp_path), n_trials=1, catch=(sweep.InvalidTrial,))
    trial = study.trials[0]
    assert trial.state == TrialState.FAIL
    assert "corruption_levels has 3 values but there are 2 hidden layers" in trial.user_attrs["error"]
    assert sweep.counts_as_done(trial)  # a result of the search, not a trial to run again


@pytest.mark.parametrize("path", sorted((REPO / "sweeps").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_search_space_reads_and_its_corners_are_valid_runs(path):
    space = sweep.load_space(path)
    assert space.params, "a search space with nothing to search"
    # the lowest and the highest value of every range (first and last choice) make checked runs
    for corner in (0, -1):
        values = {
            p.name: (p.encode(p.choices[corner]) if p.kind == "categorical" else [p.low, p.high][corner])
            for p in space.params
        }
        config = space.config(space.suggest(optuna.trial.FixedTrial(values)))
        assert config.preset == space.fixed["preset"]
