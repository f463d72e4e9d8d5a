"""Reliability: bad options, bad checkpoints, changed data, resume rules, kills, Ctrl-C, concurrent runs.

The checkpoints are corrupt or foreign ones.

Every expected failure must reach the user as one line ``error: ...`` with exit code 2, and no
fault may lose or silently corrupt a run.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from manifold_flows.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from manifold_flows.cli import main
from manifold_flows.config import MAX_VALIDATION_SHARE, TrainConfig
from manifold_flows.training import Budget

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--hidden", "16", "--depth", "2", "--batch-size", "32", "--solver-steps", "4", "--max-val-points", "30",
        "--no-progress", "--no-plot", "--warmup", "2"]


def run(capsys, *args):
    """The CLI in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "manifold_flows.cli", *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    """A small lat/lon file of the user's own, and a tiny run trained on it."""
    folder = tmp_path_factory.mktemp("events")
    g = torch.Generator().manual_seed(0)
    lat = torch.rand(120, generator=g) * 120 - 60
    lon = torch.rand(120, generator=g) * 300 - 150
    csv = folder / "events.csv"
    csv.write_text("lat,lon\n" + "".join(f"{a:.4f},{b:.4f}\n" for a, b in zip(lat.tolist(), lon.tolist())))
    out = folder / "run"
    assert main(["train", "--data", str(csv), "--steps", "6", "--eval-every", "3", "--out", str(out), *TINY]) == 0
    return csv, out


# ------------------------------------------------------------------------------------------------ options
@pytest.mark.parametrize("args,needle", [
    (["--method", "rfm", "--ppd-norm", "2"], "--ppd-norm applies to --method ppd only"),
    (["--method", "rfm", "--lam", "3"], "--lam applies to --method moser only"),
    (["--method", "moser", "--coupling", "ot"], "--coupling applies to --method rfm only"),
    (["--method", "moser", "--lam", "0"], "--lam must be > 0"),
    (["--method", "ppd", "--uniform", "2"], "--uniform must be in [0, 1)"),
    (["--warmup", "-10"], "--warmup must be >= 0"),
    (["--solver", "rk5"], "unknown --solver 'rk5'"),
    (["--activation", "swish"], "unknown --activation"),
    (["--ema", "1.5"], "--ema must be in [0, 1)"),
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--device", "cuda"], "CUDA is not available"),
    (["--device", "tpu"], "--device"),
    (["--density", "eig:10"], "applies to mesh: and implicit: data only"),
    (["--minutes", "-1"], "--minutes must be > 0"),
])
def test_bad_options_fail_before_training(capsys, tmp_path, args, needle):
    code, _, err = run(capsys, "train", "--data", "volcano", "--out", tmp_path / "o", *TINY, *args)
    assert code == 2 and needle in one_error_line(err)
    assert not (tmp_path / "o").exists()  # nothing was started


def test_out_naming_a_file_is_refused(capsys, tmp_path):
    (tmp_path / "f").write_text("x")
    code, _, err = run(capsys, "train", "--data", "volcano", "--out", tmp_path / "f", *TINY)
    assert code == 2 and "exists and is not a folder" in one_error_line(err)


def test_non_utf8_csv_names_the_file(capsys, tmp_path):
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("lat,lon\n".encode() + "10,20 # caf\xe9\n".encode("latin-1") * 20)
    code, _, err = run(capsys, "train", "--data", bad, "--out", tmp_path / "o", *TINY)
    assert code == 2 and "latin1.csv is not UTF-8" in one_error_line(err)


def test_fresh_run_does_not_overwrite_a_run(capsys, events, tmp_path):
    _, out = events
    before = (out / "best.pt").read_bytes()
    code, _, err = run(capsys, "train", "--data", "volcano", "--steps", "2", "--out", out, *TINY)
    assert code == 2 and "--overwrite" in one_error_line(err)
    assert (out / "best.pt").read_bytes() == before


# ------------------------------------------------------------------------------------------------ checkpoints
def _corrupt_copies(src: Path, folder: Path):
    data = src.read_bytes()
    mid = len(data) // 2
    flipped = bytearray(data)
    for i in range(mid, mid + 64):
        flipped[i] ^= 0xFF
    variants = {"empty": b"", "truncated": data[: len(data) // 3], "random": os.urandom(4096),
                "flipped": bytes(flipped), "text": b"hello\n"}
    paths = {}
    for name, content in variants.items():
        p = folder / f"{name}.pt"
        p.write_bytes(content)
        paths[name] = p
    torch.save({"state_dict": {"w": torch.zeros(3)}}, folder / "foreign.pt")
    paths["foreign"] = folder / "foreign.pt"
    return paths


def test_corrupt_and_foreign_checkpoints_are_refused(capsys, events, tmp_path):
    _, out = events
    for name, path in _corrupt_copies(out / "best.pt", tmp_path).items():
        for command in (["evaluate", path], ["sample", path, "-n", "5", "--out", tmp_path / "s.csv"]):
            code, _, err = run(capsys, *command)
            line = one_error_line(err)
            assert code == 2 and str(path) in line, (name, line)
            assert any(w in line for w in ("empty", "not a readable checkpoint", "corrupt",
                                           "not a manifold-flows")), line
    assert not (tmp_path / "s.csv").exists()


def test_checksum_catches_changed_tensor_bytes(tmp_path):
    save_checkpoint({"config": {}, "w": torch.arange(10.0)}, tmp_path / "a.pt")
    ck = torch.load(tmp_path / "a.pt", weights_only=True)
    ck["w"][3] += 1e-6  # a change no unpickling error would reveal
    torch.save(ck, tmp_path / "b.pt")
    assert torch.equal(load_checkpoint(tmp_path / "a.pt")["w"], torch.arange(10.0))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(tmp_path / "b.pt")


def test_changed_data_is_an_error_unless_allowed(capsys, events, tmp_path):
    csv, out = events
    edited = tmp_path / "copy"
    edited.mkdir()
    text = csv.read_text()
    try:
        csv.write_text(text + "12.5,40.0\n")
        code, _, err = run(capsys, "evaluate", out)
        assert code == 2 and "changed since it was trained" in one_error_line(err) and "n_" in err
        code, stdout, _ = run(capsys, "evaluate", out, "--allow-data-change")
        assert code == 0 and "data_changed" in json.loads(stdout)
        code, _, err = run(capsys, "train", "--data", csv, "--steps", "9", "--eval-every", "3", "--out", out,
                           "--resume", *TINY)
        assert code == 2 and "--allow-data-change" in one_error_line(err)
    finally:
        csv.write_text(text)
    code, stdout, _ = run(capsys, "evaluate", out, "--solver", "midpoint", "--solver-steps", "3")
    m = json.loads(stdout)
    assert code == 0 and "midpoint, 3 steps" in m["likelihood"] and "data_changed" not in m


def test_sample_refuses_a_folder_before_sampling(capsys, events, tmp_path):
    _, out = events
    code, _, err = run(capsys, "sample", out, "-n", "5", "--out", tmp_path)
    assert code == 2 and "is a folder" in one_error_line(err)
    code, _, err = run(capsys, "sample", out, "-n", "5", "--out", tmp_path / "s.xlsx")
    assert code == 2 and "unknown format" in one_error_line(err)
    code, _, err = run(capsys, "evaluate", out, "--solver", "nope")
    assert code == 2 and "unknown --solver" in one_error_line(err)


# ------------------------------------------------------------------------------------------------ resume
def test_resume_changes_take_effect_or_are_refused(capsys, events, tmp_path):
    csv, src = events
    out = tmp_path / "run"
    out.mkdir()
    for name in ("last.pt", "best.pt"):
        (out / name).write_bytes((src / name).read_bytes())
    base = ["train", "--data", csv, "--eval-every", "3", "--out", out, "--resume", *TINY]
    for args, field in ((["--steps", "9", "--hidden", "32"], "hidden"), (["--steps", "9", "--max-val-points", "10"],
                        "max_val_points"), (["--steps", "9", "--val-solver-steps", "8"], "val_solver_steps")):
        code, _, err = run(capsys, *base, *args)
        assert code == 2 and f"trained with {field}=" in one_error_line(err)
    code, _, err = run(capsys, *base, "--steps", "3")
    assert code == 2 and "already trained 6 steps" in one_error_line(err)
    code, _, err = run(capsys, *base, "--steps", "9", "--lr", "0.5", "--weight-decay", "0.01")
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] == 9 and m["config"]["lr"] == 0.5
    assert m["resumes"][-1]["step"] == 6 and m["resumes"][-1]["changed"]["lr"] == [0.001, 0.5]
    last = load_checkpoint(out / "last.pt")
    groups = last["optimizer"]["param_groups"]
    assert all(g["initial_lr"] == 0.5 and g["weight_decay"] == 0.01 for g in groups)  # what ran is what is recorded


# ------------------------------------------------------------------------------------------------ processes
def _wait_for(path: Path, proc, timeout=120.0):
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout, f"{path} did not appear"
        time.sleep(0.1)


def test_ctrl_c_saves_a_checkpoint_and_resume_continues(tmp_path):
    out = tmp_path / "run"
    proc = cli("train", "--data", "volcano", "--steps", "100000", "--eval-every", "20", "--out", out, *TINY)
    _wait_for(out / "last.pt", proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "--resume" in stderr
    step = load_checkpoint(out / "last.pt")["step"]
    assert step >= 20 and f"interrupted at step {step}" in stderr
    res = subprocess.run([sys.executable, "-m", "manifold_flows.cli", "train", "--data", "volcano",
                          "--steps", str(step + 5), "--eval-every", "20", "--out", str(out), "--resume", *TINY],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "metrics.json").read_text())["steps"] == step + 5


def test_a_second_run_in_the_same_folder_is_refused_and_kills_lose_nothing(tmp_path):
    out = tmp_path / "run"
    first = cli("train", "--data", "volcano", "--steps", "100000", "--eval-every", "10", "--out", out, *TINY)
    _wait_for(out / "last.pt", first)
    second = subprocess.run([sys.executable, "-m", "manifold_flows.cli", "train", "--data", "volcano", "--steps", "5",
                             "--out", str(out), "--resume", *TINY],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2 and "in use by another run" in one_error_line(second.stderr)
    for delay in (0.0, 0.37, 0.81):  # SIGKILL at arbitrary points: mid-step, mid-validation, mid-write
        time.sleep(delay)
        first.kill()
        first.communicate(timeout=60)
        ck = load_checkpoint(out / "last.pt")  # intact: every write is atomic and verified
        assert load_checkpoint(out / "best.pt")["step"] <= ck["step"]
        first = cli("train", "--data", "volcano", "--steps", "100000", "--eval-every", "10", "--out", out, "--resume",
                    *TINY)
        t0 = time.time()
        while load_checkpoint(out / "last.pt")["step"] == ck["step"]:  # it resumed and went on
            assert first.poll() is None, first.communicate()
            assert time.time() - t0 < 120
            time.sleep(0.1)
    first.kill()
    first.communicate(timeout=60)


def test_minutes_budget_stops_on_time_and_resumes(capsys, tmp_path):
    out = tmp_path / "timed"
    args = ["train", "--data", "volcano", "--steps", "10000000", "--out", out, *TINY, "--val-solver-steps", "2"]
    code, _, err = run(capsys, *args, "--minutes", "0.05")
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert 0 < m["steps"] < 10_000_000 and m["config"]["minutes"] == 0.05
    assert m["train_seconds"] < 3.0 + 10.0  # the budget, plus at most one step and one validation
    assert len(m["history"]) >= 2  # validations spread over the time, not only at the end
    first = m["steps"]
    code, _, err = run(capsys, *args, "--minutes", "0.1", "--resume")
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] > first and m["resumes"][-1]["changed"]["minutes"] == [0.05, 0.1]


def test_slow_validations_keep_to_their_share_of_a_time_budget():
    budget = Budget(TrainConfig(data="volcano", minutes=2.0))  # 120 s: a grid of validations every 12 s
    assert budget.next_validation(0.0, 0.0) == pytest.approx(12.0)
    assert budget.next_validation(13.0, 1.0) == pytest.approx(24.0)  # a cheap validation keeps the grid
    # a 10-second validation at 13 s: the next waits for 40 s of training, so validations stay at 20% of the time
    share = MAX_VALIDATION_SHARE
    assert budget.next_validation(23.0, 10.0) == pytest.approx(23.0 + 10.0 * (1 - share) / share)
    # a simulated run with validations of 15 s, longer than the grid's 12 s: on the grid alone they would take
    # all the time; spaced out, the periodic ones take at most the share of the budget plus one
    due, validating = budget.next_validation(0.0, 0.0), 0.0
    while due < 120.0:
        validating += 15.0
        due = budget.next_validation(due + 15.0, 15.0)
    assert 15.0 <= validating <= share * 120.0 + 15.0


def test_meshes_that_cannot_work_are_refused(tmp_path):
    import manifolds as mf

    double = tmp_path / "double.obj"
    double.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\nf 1 3 2\n")  # one triangle, both sides
    with pytest.raises(ValueError, match="listed more than once"):
        mf.Mesh(double)
    tet = tmp_path / "tet.obj"
    tet.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n")
    with pytest.raises(ValueError, match="at most 2 usable"):
        mf.SpectralDistance(mf.Mesh(tet), n_eigs=100)


def test_unreadable_output_folders_and_files_get_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--data", "volcano", "--out", "/dev/null/run", *TINY)
    assert code == 2 and "cannot create the folder" in one_error_line(err)
    (tmp_path / "notes.csv").write_text("lat,lon\n1,2\n")
    code, _, err = run(capsys, "evaluate", tmp_path / "notes.csv")
    assert code == 2 and "not a readable checkpoint" in one_error_line(err)
