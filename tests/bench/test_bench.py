"""repmtl bench: interleaved ratios, allocator peaks, contenders, peers and the report."""

import json

import pytest
import torch

from repmtl.bench.command import main
from repmtl.bench.contenders import floor, ours, repmtl_contenders
from repmtl.bench.memory import peak_step_memory
from repmtl.bench.peers import libmtl_contenders
from repmtl.bench.runner import BenchConfig, run_bench
from repmtl.bench.table import relative, render, slope
from repmtl.bench.timing import StepClock, interleaved_timings
from repmtl.bench.workloads import build_problem, shared_parameter_count

CPU = torch.device("cpu")


def _busy(n: int):
    def step() -> None:
        a = torch.ones(n, n)
        for _ in range(6):
            a = a @ a / n

    return step


@pytest.fixture
def one_thread():
    """Process CPU time counts every thread, idle-spinning ones too: pin to one, as the bench does."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_interleaved_ratios_order_contenders_and_drop_failures(one_thread):
    def broken() -> None:
        raise RuntimeError("boom")

    steps = {"ew": _busy(96), "heavy": _busy(288), "broken": broken}
    timings, failures = interleaved_timings(steps, "ew", StepClock(CPU), rounds=3, steps=2, warmup=1)
    assert set(timings) == {"ew", "heavy"} and "boom" in failures["broken"]
    assert timings["ew"].ratios == [1.0, 1.0, 1.0]
    summary = timings["heavy"].summary()
    assert summary["rounds"] == 3 and summary["min"] <= summary["q1"] <= summary["ratio"] <= summary["q3"] <= summary["max"]
    assert summary["ratio"] > 3  # 27× the multiply-adds
    with pytest.raises(RuntimeError, match="reference step 'broken'"):
        interleaved_timings({"broken": broken}, "broken", StepClock(CPU), rounds=1, steps=1, warmup=1)
    with pytest.raises(ValueError, match="not among"):
        interleaved_timings(steps, "missing", StepClock(CPU), rounds=1, steps=1, warmup=0)


def test_cpu_peak_counts_the_steps_own_allocations_only():
    keep = [torch.zeros(1)]

    def step() -> None:
        keep[0] = None  # frees a block from before the step: not counted
        a = torch.ones(256, 1024)  # 1 MiB
        b = torch.ones(512, 1024)  # 2 MiB, both live
        del a, b
        keep[0] = torch.ones(128, 1024)  # 0.5 MiB

    keep[0] = torch.ones(4096, 1024)
    peak = peak_step_memory(step, CPU)
    if peak is None:
        pytest.skip("this PyTorch build has no profiler event tree")
    assert 3 * 2**20 <= peak < 3.2 * 2**20


def test_workloads_build_and_share_inputs_across_seeds():
    a = build_problem("mlp", 3, CPU)
    b = build_problem("mlp", 3, CPU)
    assert a.task_names == ("t0", "t1", "t2")
    assert 0.9e6 < shared_parameter_count(a) < 1.1e6
    torch.testing.assert_close(a.inputs, b.inputs)
    z, losses = build_problem("cnn", 2, CPU).forward()
    assert z.shape[0] == 8 and set(losses) == {"t0", "t1"}
    with pytest.raises(KeyError, match="unknown workload"):
        build_problem("nope", 2, CPU)
    with pytest.raises(ValueError, match="T=2"):
        build_problem("nyuv2", 2, CPU)


def test_contenders_step_and_update_the_model():
    problem = build_problem("mlp", 2, CPU)
    before = [p.detach().clone() for p in problem.model.parameters()]
    for contender in (ours("mgda", "representation"), floor(), ours("upgrad", "parameters"), ours("ew", "representation", preset=True)):
        contender.make(problem, 1e-2)()
    assert any(not torch.equal(b, p) for b, p in zip(before, problem.model.parameters()))
    names = [c.name for c in repmtl_contenders(["ew", "uw", "upgrad", "mgda-ub"], ["parameters", "representation"])]
    assert names == ["ew", "floor", "uw", "upgrad@param", "upgrad@repr", "mgda-ub@repr", "repmtl"]
    full = repmtl_contenders(["upgrad", "pcgrad", "gradvac", "uw"], ["parameters"], full_jacobian=True)
    assert [c.name for c in full if c.family == "fullJ"] == [
        "upgrad@param:fullJ", "pcgrad@param:fullJ", "gradvac@param:fullJ"
    ]


def test_full_jacobian_contender_steps_like_the_factored_one():
    """``@param:fullJ`` runs the same method with every row of J formed: the same update."""
    results = []
    for contender in (ours("upgrad", "parameters"), ours("upgrad", "parameters", factor_linear=False)):
        problem = build_problem("mlp", 3, CPU)
        contender.make(problem, 1e-2)()
        results.append([p.detach().clone() for p in problem.model.parameters()])
    for factored, full in zip(*results, strict=True):
        torch.testing.assert_close(factored, full, rtol=1e-5, atol=1e-7)


def test_libmtl_needs_a_source_folder(tmp_path):
    assert libmtl_contenders(None, ["mgda"], ["parameters"])[0] == []
    with pytest.raises(FileNotFoundError, match="no LibMTL sources"):
        libmtl_contenders(tmp_path, ["mgda"], ["parameters"])


def test_run_render_and_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["--workloads", "mlp", "--tasks", "2", "3", "--methods", "mgda", "--levels", "parameters",
                 "--rounds", "2", "--warmup", "1", "--no-torchjd", "--quiet", "--full-jacobian", "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "### mlp, T = 2" in text and "mgda@param" in text and "EW-steps per task" in text
    assert "| × full J |" in text
    results = json.loads(out.read_text())
    group = results["groups"][0]
    assert set(group["contenders"]) == {"ew", "floor", "mgda@param", "mgda@param:fullJ", "repmtl"}
    assert group["jacobian_bytes"] == 2 * group["shared_parameters"] * 4
    assert relative(group, "ew", "ew")["ratio"] == 1.0
    assert render(results).startswith("# repmtl bench")
    assert main(["--out", str(tmp_path / "missing" / "x.json")]) == 2


def test_config_errors_name_the_bad_value():
    with pytest.raises(ValueError, match="unknown methods"):
        run_bench(BenchConfig(methods=("nope",)))
    with pytest.raises(ValueError, match="unknown workloads"):
        run_bench(BenchConfig(workloads=("nope",)))


def test_slope():
    assert slope([(2, 1.0), (4, 2.0), (8, 4.0)]) == pytest.approx(0.5)
    assert slope([(2, 1.0)]) is None


def test_torchjd_contender_runs_when_installed():
    pytest.importorskip("torchjd")
    from repmtl.bench.peers import torchjd_contenders

    contenders, skipped = torchjd_contenders(["upgrad", "mgda"], 2)
    problem = build_problem("mlp", 2, CPU)
    for contender in contenders:
        contender.make(problem, 1e-3)()
    names = [c.name for c in contenders]
    assert "torchjd:mgda" in names  # needs no optional solver
    # UPGrad needs TorchJD's quadprog extra: a contender when it is installed, else a stated skip
    assert "torchjd:upgrad" in names or any(line.startswith("torchjd:upgrad skipped: ") for line in skipped)


def test_cli_command_passes_its_options_through():
    from typer.testing import CliRunner

    from repmtl.cli import app

    args = ["bench", "--workloads", "mlp", "--tasks", "2", "--methods", "ew", "--rounds", "1", "--warmup", "0",
            "--no-memory", "--no-torchjd", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "### mlp, T = 2" in result.output and "| floor |" in result.output
    assert CliRunner().invoke(app, ["bench", "--workloads", "nope"]).exit_code == 2


@pytest.mark.slow
@pytest.mark.parametrize(("workload", "num_tasks"), [("resnet18", 2), ("nyuv2", 3)])
def test_large_workloads_build_and_run_a_forward(workload, num_tasks):
    problem = build_problem(workload, num_tasks, CPU, size=(32, 32) if workload == "resnet18" else (16, 24))
    z, losses = problem.forward()
    assert len(losses) == num_tasks and all(loss.ndim == 0 and torch.isfinite(loss) for loss in losses.values())
    assert z.requires_grad
