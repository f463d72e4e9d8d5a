"""End to end through the command line: train, resume, evaluate, sample, bad input, and a two-process run."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--hidden", "32", "--depth", "2", "--batch-size", "64", "--solver-steps", "6", "--max-val-points", "40",
        "--no-progress", "--warmup", "5"]


def cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "manifold_flows.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("volcano")
    res = cli("train", "--data", "volcano", "--steps", 20, "--eval-every", 10, "--out", out, *TINY)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def test_train_writes_metrics_checkpoints_and_figure(run_dir):
    m = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test_nll", "val_nll", "base_nll", "steps", "train_seconds", "config"):
        assert key in m, key
    assert m["steps"] == 20 and m["config"]["data"] == "volcano"
    assert abs(m["base_nll"] - 2.5310242) < 1e-4  # log(4 pi): uniform on S^2
    assert m["test_nll"] == m["test_nll"]  # not NaN
    assert [h["step"] for h in m["history"]] == [10, 20]
    assert (run_dir / "best.pt").exists() and (run_dir / "last.pt").exists()
    assert (run_dir / "density.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_reproduces_test_nll(run_dir):
    m = json.loads((run_dir / "metrics.json").read_text())
    res = cli("evaluate", run_dir)
    assert res.returncode == 0, res.stderr[-3000:]
    assert abs(json.loads(res.stdout)["test_nll"] - m["test_nll"]) < 1e-5


def test_sample_writes_latlon_csv(run_dir, tmp_path):
    res = cli("sample", run_dir / "best.pt", "-n", 50, "--out", tmp_path / "s.csv")
    assert res.returncode == 0, res.stderr[-3000:]
    rows = list(csv.reader((tmp_path / "s.csv").open()))
    assert rows[0] == ["lat", "lon"] and len(rows) == 51
    assert all(-90 <= float(r[0]) <= 90 and -180 <= float(r[1]) <= 180 for r in rows[1:])


def test_resume_continues_from_last_checkpoint(run_dir):
    res = cli("train", "--data", "volcano", "--steps", 30, "--eval-every", 10, "--out", run_dir, "--resume", *TINY)
    assert res.returncode == 0, res.stderr[-3000:]
    m = json.loads((run_dir / "metrics.json").read_text())
    assert [h["step"] for h in m["history"]] == [10, 20, 30]


def test_resume_refuses_a_different_model(run_dir):
    res = cli("train", "--data", "volcano", "--steps", 40, "--out", run_dir, "--resume", *TINY[:1], "64", *TINY[2:])
    assert res.returncode == 2 and "hidden" in res.stderr


def test_bad_data_gets_a_clear_error(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("lat,lon\n" + "10,20\n" * 20 + "95,20\n")
    res = cli("train", "--data", bad, "--steps", 2, "--out", tmp_path / "o", *TINY)
    assert res.returncode == 2
    assert "bad.csv" in res.stderr and "22" in res.stderr


@pytest.mark.parametrize("method", ["rfm", "moser"])
def test_two_process_gloo_run(tmp_path, method):
    # moser differentiates a divergence (double backward) through DistributedDataParallel
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "manifold_flows.cli", "train", "--data", "volcano", "--method", method, "--steps", "10",
           "--eval-every", "10", "--out", str(out), "--no-plot", *TINY]
    res = subprocess.run(
        cmd,
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["steps"] == 10


@pytest.fixture(scope="module", params=["moser", "ppd"])
def method_run(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    res = cli("train", "--data", "volcano", "--method", request.param, "--steps", 12, "--eval-every", 6, "--out", out,
              *TINY)
    assert res.returncode == 0, res.stderr[-3000:]
    return request.param, out


def test_other_methods_train_evaluate_sample_and_resume(method_run, tmp_path):
    method, out = method_run
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["method"] == method and m["steps"] == 12
    assert m["test_nll"] == m["test_nll"] and (out / "density.png").exists()
    if method == "moser":
        assert m["config"]["activation"] == "softplus100" and m["config"]["lam"] == 2.0  # per-method defaults
        for key in ("negative_mass", "total_mass", "ode_nll", "explicit_nll", "ode_abs_diff_mean"):
            assert key in m, key
        assert abs(m["explicit_nll"] - m["test_nll"]) < 1e-5 or m["ode_check_points"] < m["n_test"]
    else:
        assert m["config"]["ppd_norm"] == 1
        assert m["objective"]["kappa1"] > 0 and "path_nll" in m
    res = cli("evaluate", out)
    assert res.returncode == 0, res.stderr[-3000:]
    assert abs(json.loads(res.stdout)["test_nll"] - m["test_nll"]) < 1e-5
    res = cli("sample", out, "-n", 20, "--out", tmp_path / "s.npy", "--solver-steps", 4)
    assert res.returncode == 0, res.stderr[-3000:]
    res = cli("train", "--data", "volcano", "--method", method, "--steps", 18, "--eval-every", 6, "--out", out,
              "--resume", *TINY)
    assert res.returncode == 0, res.stderr[-3000:]
    assert [h["step"] for h in json.loads((out / "metrics.json").read_text())["history"]] == [6, 12, 18]


def test_bad_method_options_get_clear_errors(tmp_path):
    res = cli("train", "--data", "volcano", "--method", "ppd", "--ppd-norm", 3, "--steps", 2, "--out", tmp_path, *TINY)
    assert res.returncode == 2 and "--ppd-norm" in res.stderr
    res = cli("train", "--data", "volcano", "--method", "flowy", "--steps", 2, "--out", tmp_path, *TINY)
    assert res.returncode == 2 and "flowy" in res.stderr
    res = cli("train", "--data", "volcano", "--method", "rfm", "--divergence", "trace", "--steps", 2, "--out", tmp_path,
              *TINY)
    assert res.returncode == 2 and "divergence" in res.stderr
