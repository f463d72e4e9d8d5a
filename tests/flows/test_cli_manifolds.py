"""The command line's train, evaluate and sample on SO(3), SPD(2), hyperbolic space, tori and protein torsions.

The tori are high-dimensional.
"""

import csv
import json

import pytest
import torch

from manifold_flows.cli import main
from manifold_flows.datasets import SYNTHETIC, parse_manifold

TINY = ["--hidden", "16", "--depth", "2", "--batch-size", "32", "--solver-steps", "4", "--val-solver-steps", "3",
        "--max-val-points", "30", "--no-progress", "--warmup", "2", "--steps", "4", "--eval-every", "2",
        "--n-synthetic", "300"]


def _write_points(path, target, n=200):
    x = SYNTHETIC[target]().sample(n, torch.Generator().manual_seed(0))
    path.write_text("\n".join(",".join(f"{v:.12g}" for v in row) for row in x.tolist()) + "\n")
    return str(path)


def _run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


CASES = {
    "so3-csv-rfm": ("csv:wrapped_normal_so3", "so3", "rfm"),
    "so3-moser": ("wrapped_normal_so3", None, "moser"),
    "so3-ppd": ("wrapped_normal_so3", None, "ppd"),
    "spd2-rfm": ("wrapped_normal_spd2", None, "rfm"),
    "poincare2-csv-rfm": ("csv:wrapped_normal_poincare2", "poincare:2", "rfm"),
    "hyperboloid2-rfm": ("wrapped_normal_hyperboloid2", None, "rfm"),
    "torus20-rfm": ("torus_mixture_t20", None, "rfm"),
    "torus5-moser": ("torus_mixture_t5", None, "moser"),
    "torus5-ppd": ("torus_mixture_t5", None, "ppd"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_train_evaluate_sample(tmp_path, capsys, case):
    data, manifold, method = CASES[case]
    extra = []
    if data.startswith("csv:"):
        data = _write_points(tmp_path / "points.csv", data[4:])
        extra = ["--manifold", manifold]
    out = tmp_path / "run"
    code, stdout, err = _run(capsys, "train", "--data", data, "--method", method, "--out", out, "--no-plot", *extra,
                             *TINY)
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] == 4 and m["test_nll"] == m["test_nll"]
    if not data.endswith(".csv"):
        assert abs(m["gap"] - (m["test_nll"] - m["target_nll"])) < 1e-9
    code, stdout, err = _run(capsys, "evaluate", out)
    assert code == 0, err
    assert abs(json.loads(stdout)["test_nll"] - m["test_nll"]) < 1e-4
    code, stdout, err = _run(capsys, "sample", out, "-n", 20, "--out", tmp_path / "s.csv", "--solver-steps", 3)
    assert code == 0, err
    rows = list(csv.reader((tmp_path / "s.csv").open()))
    x = torch.tensor([[float(v) for v in r] for r in rows[1:]], dtype=torch.float64)
    spec = manifold or {"so3": "so3", "spd2": "spd:2", "hyperboloid2": "hyperboloid:2", "torus20": "torus:20",
                        "torus5": "torus:5"}[case.split("-")[0]]
    ok, reason = parse_manifold(spec).check_point(x, atol=1e-4)
    assert x.shape[0] == 20 and ok, reason


def test_protein_torsions_with_amino_class(tmp_path, capsys):
    lines = []
    gen = torch.Generator().manual_seed(0)
    for amino in ("General", "Glycine"):
        angles = torch.rand(60, 2, generator=gen) * 360 - 180
        lines += [f"1xyz:ChainA:RES{i}\t{a:.3f}\t{b:.3f}\t{amino}" for i, (a, b) in enumerate(angles.tolist())]
    path = tmp_path / "aggregated_angles.tsv"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    code, _, err = _run(capsys, "train", "--data", path, "--amino", "Glycine", "--out", out, "--no-plot", *TINY)
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["data"]["n_train"] + m["data"]["n_val"] + m["data"]["n_test"] == 60
    assert m["data"]["manifold"] == "FlatTorus(dim=2)"


@pytest.mark.parametrize("data, method, words", [
    ("wrapped_normal_spd2", "moser", "Moser Flow needs a compact manifold without boundary"),
    ("wrapped_normal_poincare2", "ppd", "PPD cannot run on PoincareBall"),
    ("wrapped_normal_so3", "rfm", "--manifold applies to a CSV file of your own points"),
])
def test_inapplicable_methods_and_options_are_one_line_errors(tmp_path, capsys, data, method, words):
    extra = ["--manifold", "so3"] if method == "rfm" else []
    code, _, err = _run(capsys, "train", "--data", data, "--method", method, "--out", tmp_path / "o", *extra, *TINY)
    assert code == 2 and err.startswith("error: ") and words in err and err.count("\n") == 1, err


def test_bad_csv_row_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "rot.csv"
    _write_points(path, "wrapped_normal_so3", n=30)
    rows = path.read_text().splitlines()
    rows[11] = "1,0,0,0,1,0,0,0,-1"
    path.write_text("\n".join(rows) + "\n")
    code, _, err = _run(capsys, "train", "--data", path, "--manifold", "so3", "--out", tmp_path / "o", *TINY)
    assert code == 2 and "rot.csv, line 12: row 12 is not a rotation matrix: a reflection" in err, err
