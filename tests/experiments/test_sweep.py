"""Sweeps: planning, skipping finished runs, resuming interrupted ones, locks, executors."""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from filelock import FileLock
from rich.console import Console

from repmtl.experiments import sweep as sweep_module
from repmtl.experiments.runs import read_jsonl, read_run
from repmtl.experiments.sweep import Driver, plan, run_sweep
from repmtl.experiments.sweepfile import SweepError, load_sweep
from repmtl.experiments.sweepjobs import Job, folder_state
from repmtl.train.config import TrainConfig
from repmtl.train.experiment import run_experiment
from repmtl.train.trainer import Trainer

TINY = """
benchmarks = ["multidigits"]
seeds = {seeds}
baselines = {baselines}

[train]
epochs = {epochs}
max_steps = 2
batch_size = 16
log_every = 1

{methods}
"""


def _consecutive(epochs, count):
    """``count`` epochs logged once each, in order (whatever the first epoch's number)."""
    return len(epochs) == count and epochs == list(range(epochs[0], epochs[0] + count))


def _sweep_file(tmp_path, methods=("ew", "pcgrad"), seeds=(0,), epochs=2, baselines=True, extra=""):
    blocks = "\n".join(f'[[methods]]\nname = "{m}"\n' for m in methods)
    text = TINY.format(seeds=list(seeds), baselines=str(baselines).lower(), epochs=epochs, methods=blocks) + extra
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


def test_plan_shares_baselines_and_checks_methods_before_training(tmp_path):
    spec = load_sweep(_sweep_file(tmp_path, seeds=(0, 1)))
    jobs = plan(spec, tmp_path / "out")
    baselines = [j for j in jobs if j.kind == "baseline"]
    runs = [j for j in jobs if j.kind == "run"]
    assert len(baselines) == 4 and len(runs) == 4  # 2 tasks × 2 seeds, shared by both methods
    assert jobs[:4] == baselines
    for run in runs:
        assert len(run.needs) == 2
        assert {b.config.seed for b in baselines if b.id in run.needs} == {run.config.seed}
    bad = _sweep_file(tmp_path, methods=("mgda",), extra='[methods.args]\nbogus = 1\n')
    with pytest.raises(SweepError, match=r"run multidigits/mgda-bogus=1-seed0"):
        plan(load_sweep(bad), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_finished_runs_are_skipped_and_interrupted_ones_resume(tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    path = _sweep_file(tmp_path)
    calls = {"n": 0}
    original = Trainer._train_epoch

    def interrupted(self, *args):
        calls["n"] += 1
        if calls["n"] == 8:  # baselines 1–4, ew 5–6, pcgrad's second epoch: Ctrl-C
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(Trainer, "_train_epoch", interrupted)
    first = run_sweep(path, out=out)
    assert first.interrupted and first.counts["done"] == 3
    pcgrad = out / "multidigits" / "pcgrad-seed0"
    assert (pcgrad / "checkpoints" / "last.pt").exists() and not (pcgrad / "results.json").exists()
    finished = {p: p.stat().st_mtime_ns for p in out.glob("multidigits/*/results.json")}
    assert len(finished) == 3

    monkeypatch.setattr(Trainer, "_train_epoch", original)
    second = run_sweep(path, out=out)
    assert second.ok and second.counts["skipped"] == 3 and second.counts["done"] == 1
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # untouched
    epochs, bad = read_jsonl(pcgrad / "epochs.jsonl")
    steps, _ = read_jsonl(pcgrad / "steps.jsonl")
    assert not bad and _consecutive([r["epoch"] for r in epochs], 2)
    assert [r["step"] for r in steps] == [1, 2, 3, 4]  # resumed after epoch 1, nothing logged twice

    # the resumed run ends where an uninterrupted one does
    straight_out = tmp_path / "straight"
    for stl in out.glob("multidigits/stl-*"):
        shutil.copytree(stl, straight_out / "multidigits" / stl.name, ignore=shutil.ignore_patterns(".lock"))
    config = TrainConfig.from_dict({k: v for k, v in json.loads((pcgrad / "config.json").read_text()).items()
                                    if k != "tasks"})
    run_experiment(replace(config, out=str(straight_out)))
    straight = read_run(straight_out / "multidigits" / "pcgrad-seed0")
    resumed = read_run(pcgrad)
    assert resumed.test == straight.test and resumed.best_epoch == straight.best_epoch

    third = run_sweep(path, out=out)
    assert third.counts["skipped"] == 4


def test_more_epochs_resume_and_fewer_are_refused(tmp_path):
    out = tmp_path / "sweep"
    run_sweep(_sweep_file(tmp_path, methods=("ew",), epochs=1, baselines=False), out=out)
    longer = run_sweep(_sweep_file(tmp_path, methods=("ew",), epochs=2, baselines=False), out=out)
    assert longer.counts["done"] == 1
    epochs, _ = read_jsonl(out / "multidigits" / "ew-seed0" / "epochs.jsonl")
    assert _consecutive([r["epoch"] for r in epochs], 2)
    with pytest.raises(SweepError, match="holds a run of 2 epochs; the sweep asks for 1"):
        run_sweep(_sweep_file(tmp_path, methods=("ew",), epochs=1, baselines=False), out=out)


def test_a_folder_of_another_configuration_is_not_overwritten(tmp_path):
    out = tmp_path / "sweep"
    path = _sweep_file(tmp_path, methods=("ew",), baselines=False)
    run_sweep(path, out=out)
    path.write_text(path.read_text().replace("batch_size = 16", "batch_size = 8"))
    with pytest.raises(SweepError, match=r"batch_size: 16 there, 8 in the sweep"):
        run_sweep(path, out=out)


class _RecordingBackend:
    capacity = 2

    def __init__(self):
        self.started = []

    def start(self, job):
        self.started.append(job.id)

    def poll(self):
        return []

    def stop(self):
        pass

    def where(self, job_id):
        return "-"


def test_a_folder_trained_by_another_process_is_left_to_it(tmp_path):
    job = Job("multidigits/x", "run", TrainConfig(out=str(tmp_path), name="x"), (), 6)
    job.run_dir.mkdir(parents=True)
    holder = FileLock(str(job.run_dir / ".lock"), timeout=0)
    holder.acquire()
    backend = _RecordingBackend()
    driver = Driver([job], backend, Console(file=io.StringIO()))
    driver._launch()
    assert driver.state[job.id] == "waiting" and backend.started == []
    holder.release()
    driver._launch()
    assert driver.state[job.id] == "running" and backend.started == [job.id]
    assert folder_state(job) == "new"


def test_a_failed_baseline_blocks_its_runs_and_the_others_go_on(tmp_path, monkeypatch):
    original = Trainer.__init__

    def failing(self, config, *args, **kwargs):
        if config.single_task == "left" and config.seed == 1:
            raise RuntimeError("disk on fire")
        original(self, config, *args, **kwargs)

    monkeypatch.setattr(Trainer, "__init__", failing)
    outcome = run_sweep(_sweep_file(tmp_path, methods=("ew",), seeds=(0, 1)), out=tmp_path / "sweep")
    assert not outcome.ok
    assert outcome.counts["done"] == 4 and outcome.counts["failed"] == 1 and outcome.counts["blocked"] == 1
    reasons = dict(outcome.failed)
    (baseline,) = [job for job in reasons if "stl-left" in job]
    assert "disk on fire" in reasons[baseline]
    assert baseline in reasons["multidigits/ew-seed1"]


def test_cluster_without_submitit_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)
    monkeypatch.delitem(sys.modules, "repmtl.experiments.sweep_cluster", raising=False)
    with pytest.raises(SweepError, match=r"pip install 'repmtl\[cluster\]'"):
        run_sweep(_sweep_file(tmp_path, methods=("ew",), baselines=False), out=tmp_path / "sweep", cluster="local")


def test_submitit_local_executor_runs_the_jobs(tmp_path):
    pytest.importorskip("submitit")
    out = tmp_path / "sweep"
    path = _sweep_file(tmp_path, methods=("ew",), baselines=False, extra="[cluster]\ntimeout_min = 5\n")
    outcome = run_sweep(path, out=out, cluster="local")
    assert outcome.ok and outcome.counts["done"] == 1
    assert read_run(out / "multidigits" / "ew-seed0").tasks == ("left", "right")
    assert any((out / "submitit").rglob("*_result.pkl"))
    assert run_sweep(path, out=out, cluster="local").counts["skipped"] == 1


def test_bad_cluster_parameters_name_the_table(tmp_path):
    pytest.importorskip("submitit")
    path = _sweep_file(tmp_path, methods=("ew",), baselines=False, extra="[cluster]\nwarp_speed = 9\n")
    with pytest.raises(SweepError, match=r"\[cluster\] table"):
        run_sweep(path, out=tmp_path / "sweep", cluster="local")


@pytest.mark.slow
def test_local_processes_survive_killing_the_driver_and_its_workers(tmp_path):
    """Kill -9 the driver and its workers mid-sweep, restart: finished runs are skipped,
    interrupted ones resume, every run ends exactly once."""
    out = tmp_path / "sweep"
    path = _sweep_file(tmp_path, methods=("ew", "pcgrad", "avgnorm"), seeds=(0, 1), epochs=3)
    path.write_text(path.read_text().replace("max_steps = 2", "max_steps = 30"))
    command = [sys.executable, "-m", "repmtl.cli", "sweep", str(path), "--out", str(out), "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(Path(sweep_module.__file__).parents[2])}
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        done = list(out.glob("multidigits/*-seed*/results.json"))
        partial = [p for p in out.glob("multidigits/*-seed*") if (p / "checkpoints" / "last.pt").exists()
                   and not (p / "results.json").exists()]
        if done and partial:
            break
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and its workers, no clean-up
    driver.wait()
    assert done and partial, "the sweep never had finished and half-trained runs at once"
    finished_before = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("multidigits/*/results.json")}

    restarted = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    assert "interrupted job(s) will resume" in restarted.stderr
    runs = sorted(p for p in out.glob("multidigits/*") if p.is_dir())
    assert len(runs) == 6 + 4
    for run in runs:
        record = read_run(run)
        epochs, bad = read_jsonl(run / "epochs.jsonl")
        assert not bad and _consecutive([r["epoch"] for r in epochs], 3), run
        steps = [r["step"] for r in read_jsonl(run / "steps.jsonl")[0]]
        assert steps == sorted(set(steps)), run  # no step logged twice
        assert record.config["epochs"] == 3
        if run.name in finished_before:
            assert (run / "results.json").stat().st_mtime_ns == finished_before[run.name]
