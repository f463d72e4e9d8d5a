"""Your own points: CSV rows in a manifold's coordinates, checked row by row, and protein torsion TSVs."""

import math
import re

import numpy as np
import pytest
import torch

import manifolds as mf
from manifold_flows import TrainConfig
from manifold_flows.datasets import (
    AMINO_CLASSES,
    SYNTHETIC,
    load_dataset,
    parse_manifold,
    read_points_csv,
    read_torsion_tsv,
)


def _write(path, rows, header=None):
    lines = ([header] if header else []) + [",".join(f"{v:.10g}" for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("spec, kind, dim", [("so3", mf.SO3, 3), ("spd:3", mf.SPD, 6),
                                             ("poincare:2", mf.PoincareBall, 2), ("hyperboloid:4", mf.Hyperboloid, 4),
                                             ("torus:10", mf.FlatTorus, 10), ("Sphere:3", mf.Sphere, 3)])
def test_parse_manifold(spec, kind, dim):
    m = parse_manifold(spec)
    assert isinstance(m, kind) and m.dim == dim


@pytest.mark.parametrize("spec", ["so3:2", "spd", "spd:0", "torus:x", "klein:2", ""])
def test_parse_manifold_refuses(spec):
    with pytest.raises(ValueError, match="so3 \\| spd:N"):
        parse_manifold(spec)


@pytest.mark.parametrize("spec, target", [("so3", "wrapped_normal_so3"), ("spd:2", "wrapped_normal_spd2"),
                                          ("poincare:2", "wrapped_normal_poincare2"),
                                          ("hyperboloid:2", "wrapped_normal_hyperboloid2")])
def test_points_round_trip(tmp_path, spec, target):
    x = SYNTHETIC[target]().sample(30, torch.Generator().manual_seed(0))
    path = _write(tmp_path / "p.csv", x.tolist(), header=",".join(f"c{i}" for i in range(x.shape[1])))
    got = read_points_csv(path, parse_manifold(spec))
    assert got.shape == x.shape and torch.allclose(got, x, atol=1e-8)
    assert parse_manifold(spec).check_point(got)[0]


def test_torus_angles_are_read_modulo_two_pi(tmp_path):
    rows = [[-1.0, 7.0, 3.0]] * 12
    got = read_points_csv(_write(tmp_path / "t.csv", rows), parse_manifold("torus:3"))
    assert torch.allclose(got[0], torch.tensor([2 * math.pi - 1.0, 7.0 - 2 * math.pi, 3.0], dtype=torch.float64))


def _rotations(n):
    return mf.SO3().random_base(n, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).tolist()


@pytest.mark.parametrize("spec, bad_row, why", [
    ("so3", [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.01], "not a rotation matrix: not orthogonal"),
    ("so3", [1.0, 0, 0, 0, 1.0, 0, 0, 0, -1.0], "not a rotation matrix: a reflection"),
    ("spd:2", [2.0, 0.5, 0.4, 1.0], "not symmetric positive-definite: not symmetric"),
    ("spd:2", [1.0, 2.0, 2.0, 1.0], "not symmetric positive-definite: smallest eigenvalue"),
    ("poincare:2", [0.8, 0.6], "outside the ball"),
    ("hyperboloid:2", [-math.sqrt(2.0), 1.0, 0.0], "off the hyperboloid: x0"),
    ("hyperboloid:2", [1.5, 1.0, 0.0], "off the hyperboloid: x0 = 1.5 but sqrt"),
    ("sphere:2", [1.0, 1.0, 0.0], "not on the unit sphere"),
])
def test_bad_rows_are_named_with_their_line(tmp_path, spec, bad_row, why):
    m = parse_manifold(spec)
    good = m.random_base(15, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).tolist()
    rows = good[:6] + [bad_row] + good[6:]
    path = _write(tmp_path / "bad.csv", rows, header="a,b")  # header: line 1; the bad row is data row 7, line 8
    with pytest.raises(ValueError) as e:
        read_points_csv(path, m)
    msg = str(e.value)
    assert "bad.csv, line 8: row 7 is" in msg and why in msg, msg


@pytest.mark.parametrize("text, why", [
    ("1,2\n" * 12, "expected 9 numbers per row for SO3() (its coordinates, matrices flattened row-major), found 2"),
    ("1,0,0,0,1,0,0,0,1\n" * 11 + "1,0,0,0,x,0,0,0,1\n", "line 12: 'x' is not a finite number"),
    ("1,0,0,0,1,0,0,0,1\n" * 11 + "1,0,0,0,nan,0,0,0,1\n", "line 12: 'nan' is not a finite number"),
    ("1,0,0,0,1,0,0,0,1\n" * 3, "3 data row(s), fewer than min_rows=10"),
])
def test_malformed_files(tmp_path, text, why):
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(why)):
        read_points_csv(path, mf.SO3())


def _tsv(path, n_each=8, header=True):
    rng = np.random.default_rng(0)
    lines = ["source\tphi\tpsi\tamino"] if header else []
    for k, amino in enumerate(AMINO_CLASSES):
        for i in range(n_each * (k + 1)):
            phi, psi = rng.uniform(-180, 180, 2)
            lines.append(f"1abc:ChainA:ALA{i}\t{phi:.4f}\t{psi:.4f}\t{amino}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_torsion_tsv_loads_on_t2_with_amino_filter(tmp_path):
    path = _tsv(tmp_path / "angles.tsv")
    all_rows = read_torsion_tsv(path)
    assert all_rows.shape == (8 * 10, 2) and mf.FlatTorus(2).check_point(all_rows)[0]
    assert read_torsion_tsv(path, "Proline").shape == (8 * 3, 2)
    first = path.read_text().splitlines()[1].split("\t")
    expected = torch.deg2rad(torch.tensor([float(first[1]), float(first[2])], dtype=torch.float64)) % (2 * math.pi)
    assert torch.allclose(all_rows[0], expected)
    data = load_dataset(str(path), amino="Glycine", seed=3)
    assert isinstance(data["manifold"], mf.FlatTorus) and data["manifold"].dim == 2
    assert sum(data[k].shape[0] for k in ("train", "val", "test")) == 16
    with pytest.raises(ValueError, match="unknown amino class 'Alanine'"):
        read_torsion_tsv(path, "Alanine")
    with pytest.raises(ValueError, match="fewer than min_rows=100 .*General 8, Glycine 16"):
        read_torsion_tsv(path, min_rows=100)


@pytest.mark.parametrize("line, why", [("x\t10\t20", "expected 4 tab-separated fields"),
                                       ("x\t10\tabc\tGeneral", "are not numbers"),
                                       ("x\t10\t20\tHelix", "unknown amino class 'Helix'")])
def test_torsion_tsv_bad_lines(tmp_path, line, why):
    path = _tsv(tmp_path / "a.tsv")
    path.write_text(path.read_text() + line + "\n")
    with pytest.raises(ValueError, match=f"a.tsv, line 82: .*{why}"):
        read_torsion_tsv(path)


def test_config_checks_manifold_and_amino_against_the_data(tmp_path):
    def problems(**kw):
        return " | ".join(TrainConfig(out=str(tmp_path / "o"), **kw).resolved().problems())

    assert problems(data="mine.csv", manifold="so3") == ""
    assert "--manifold applies to a CSV file of your own points, not 'wrapped_normal_so3'" in problems(
        data="wrapped_normal_so3", manifold="so3")
    assert "--manifold: unknown manifold 'klein:2'" in problems(data="mine.csv", manifold="klein:2")
    assert "--amino applies to protein torsion files (.tsv)" in problems(data="mine.csv", amino="General")
    assert "--amino must be one of" in problems(data="angles.tsv", amino="general")
    assert problems(data="angles.tsv", amino="Pre-Pro") == ""
    with pytest.raises(ValueError, match="holds points on torus:2, not 'so3'"):
        load_dataset(str(_tsv(tmp_path / "b.tsv")), manifold="so3")
