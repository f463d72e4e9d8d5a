"""Earth data: bundled files, CSV parsing and its errors, coordinates, de-duplication, splits, load_dataset."""

import math
import re

import pytest
import torch

from manifold_flows.datasets import (
    EARTH_DATASETS,
    SYNTHETIC,
    dedupe,
    latlon_to_xyz,
    load_dataset,
    load_earth,
    read_latlon_csv,
    split,
    xyz_to_latlon,
)
from manifold_flows.datasets.earth import DATA_DIR
from manifolds import Sphere

ROWS = {"volcano": 827, "earthquake": 6120, "flood": 4875}
DISTINCT = {"volcano": 267, "earthquake": 5447}


def _write(tmp_path, text, name="points.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _rows(n=12, lat0=10.0, lon0=-20.0):
    return [(lat0 + i, lon0 + 2 * i) for i in range(n)]


# ---------------------------------------------------------------------------------------- bundled data
@pytest.mark.parametrize("name", EARTH_DATASETS)
def test_bundled_files_load_on_the_sphere(name):
    x = load_earth(name)
    assert x.shape == (ROWS[name], 3) and x.dtype == torch.float64
    ok, reason = Sphere(2).check_point(x)
    assert ok, reason
    assert (DATA_DIR / f"{name}.csv").is_file()


@pytest.mark.parametrize("name", ["volcano", "earthquake"])
def test_bundled_duplicates(name):
    x = load_earth(name)
    assert dedupe(x).shape == (DISTINCT[name], 3)
    latlon = read_latlon_csv(DATA_DIR / f"{name}.csv")
    assert dedupe(latlon).shape[0] == DISTINCT[name]


def test_bundled_first_rows_match_the_files():
    # first data rows of each file, read by eye: the header order is lat, lon in all three
    first = {"volcano": (-30.2, -178.47), "earthquake": (31.1, 35.5), "flood": (35.8142, 5.23026)}
    for name, latlon in first.items():
        got = read_latlon_csv(DATA_DIR / f"{name}.csv")[0]
        assert torch.allclose(got, torch.tensor(latlon, dtype=torch.float64))


# ---------------------------------------------------------------------------------------- parsing
def test_header_order_is_read_from_the_header(tmp_path):
    rows = _rows()
    latlon = torch.tensor(rows, dtype=torch.float64)
    lines = ["# comment", "", "LON , Latitude"] + [f"{lon},{lat}" for lat, lon in rows]
    got = read_latlon_csv(_write(tmp_path, "\n".join(lines) + "\n"))
    assert torch.equal(got, latlon)
    extra = ["id,long,name,lat"] + [f"{i},{lon},event {i},{lat}" for i, (lat, lon) in enumerate(rows)]
    assert torch.equal(read_latlon_csv(_write(tmp_path, "\n".join(extra), "extra.csv")), latlon)


def test_no_header_means_lat_lon(tmp_path):
    rows = _rows()
    path = _write(tmp_path, "\n".join(f"{lat},{lon}" for lat, lon in rows) + "\n\n")
    assert torch.equal(read_latlon_csv(path), torch.tensor(rows, dtype=torch.float64))
    assert torch.allclose(load_earth(path), latlon_to_xyz(torch.tensor(rows, dtype=torch.float64)))
    assert load_earth(str(path)).shape == (12, 3)


def _assert_names_file_and_line(exc_info, path, line, *fragments):
    msg = str(exc_info.value)
    assert str(path) in msg, msg
    assert re.search(rf"\bline {line}\b", msg), msg
    for frag in fragments:
        assert frag in msg, msg


@pytest.mark.parametrize(
    "bad_line,fragments",
    [
        ("12.5,abc", ["'abc'"]),
        ("12.5,", ["''"]),
        ("12.5,7,3", ["columns"]),
        ("12.5", ["columns"]),
        ("nan,7", ["NaN"]),
        ("91,7", ["latitude", "'91'"]),
        ("-90.5,7", ["latitude"]),
        ("12,361", ["longitude", "'361'"]),
        ("12,-181", ["longitude"]),
        ("12,inf", ["longitude"]),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, bad_line, fragments):
    lines = ["# source", "lat,lon"] + [f"{lat},{lon}" for lat, lon in _rows()]
    lines.insert(6, bad_line)  # 1-based line 7
    path = _write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(ValueError) as exc_info:
        read_latlon_csv(path)
    _assert_names_file_and_line(exc_info, path, 7, *fragments)


def test_bad_row_without_header_names_line(tmp_path):
    lines = [f"{lat},{lon}" for lat, lon in _rows()]
    lines[3] = "1,x"
    path = _write(tmp_path, "\n".join(lines))
    with pytest.raises(ValueError) as exc_info:
        read_latlon_csv(path)
    _assert_names_file_and_line(exc_info, path, 4, "'x'")


def test_header_without_lat_lon_names_file_and_line(tmp_path):
    path = _write(tmp_path, "# a\n# b\nx,y\n" + "\n".join(f"{a},{b}" for a, b in _rows()))
    with pytest.raises(ValueError) as exc_info:
        read_latlon_csv(path)
    _assert_names_file_and_line(exc_info, path, 3, "latitude", "longitude")
    path = _write(tmp_path, "lat,foo\n" + "\n".join(f"{a},{b}" for a, b in _rows()), "half.csv")
    with pytest.raises(ValueError) as exc_info:
        read_latlon_csv(path)
    _assert_names_file_and_line(exc_info, path, 1, "no longitude")


def test_too_few_rows(tmp_path):
    path = _write(tmp_path, "lat,lon\n" + "\n".join(f"{a},{b}" for a, b in _rows(5)) + "\n")
    with pytest.raises(ValueError) as exc_info:
        read_latlon_csv(path)
    _assert_names_file_and_line(exc_info, path, 6, "min_rows=10")
    assert read_latlon_csv(path, min_rows=5).shape == (5, 2)
    empty = _write(tmp_path, "# nothing here\n", "empty.csv")
    with pytest.raises(ValueError, match="0 data row"):
        read_latlon_csv(empty)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_latlon_csv(path)
    with pytest.raises(FileNotFoundError, match="volcano"):
        load_earth("volcanoes")


# ---------------------------------------------------------------------------------------- coordinates
def test_latlon_xyz_round_trip():
    g = torch.Generator().manual_seed(0)
    lat = 180 * torch.rand(1000, dtype=torch.float64, generator=g) - 90
    lon = 360 * torch.rand(1000, dtype=torch.float64, generator=g) - 180
    latlon = torch.stack([lat, lon], -1)
    x = latlon_to_xyz(latlon)
    assert torch.allclose(x.norm(dim=-1), torch.ones(1000, dtype=torch.float64))
    assert torch.allclose(xyz_to_latlon(x), latlon, atol=1e-9)
    # longitudes in (180, 360] come back shifted by -360
    east = torch.tensor([[10.0, 270.0]], dtype=torch.float64)
    assert torch.allclose(xyz_to_latlon(latlon_to_xyz(east)), torch.tensor([[10.0, -90.0]], dtype=torch.float64))
    # known points, float32 kept
    pts = latlon_to_xyz(torch.tensor([[0.0, 0.0], [90.0, 0.0], [0.0, 90.0]]))
    assert pts.dtype == torch.float32
    assert torch.allclose(pts, torch.eye(3)[[0, 2, 1]], atol=1e-6)
    expected = torch.tensor([[math.sqrt(3) / 2, 0.0, 0.5]], dtype=torch.float64)
    assert torch.allclose(latlon_to_xyz(torch.tensor([[30, 0]])), expected)  # integer input -> float64


# ---------------------------------------------------------------------------------------- dedupe and split
def test_dedupe_keeps_first_occurrences_in_order():
    x = torch.tensor(
        [[3.0, 0.0], [1.0, 1.0], [3.0, 0.0], [0.0, 2.0], [1.0, 1.0 + 1e-9], [-0.0, 2.0]], dtype=torch.float64
    )
    assert torch.equal(dedupe(x), x[[0, 1, 3]])
    assert torch.equal(dedupe(x, decimals=12), x[[0, 1, 3, 4]])


def test_split_sizes_determinism_disjointness():
    x = load_earth("volcano")
    train, val, test = split(x, seed=3)
    assert (train.shape[0], val.shape[0], test.shape[0]) == (663, 82, 82)
    again = split(x, seed=3)
    assert all(torch.equal(a, b) for a, b in zip((train, val, test), again))
    other = split(x, seed=4)
    assert not torch.equal(train, other[0])
    # disjoint as index sets: split the row indices the same way
    idx = torch.arange(x.shape[0], dtype=torch.float64).unsqueeze(1)
    i_tr, i_va, i_te = (s.squeeze(1).long() for s in split(idx, seed=3))
    assert torch.equal(x[i_tr], train) and torch.equal(x[i_va], val) and torch.equal(x[i_te], test)
    all_idx = torch.cat([i_tr, i_va, i_te])
    assert torch.equal(torch.sort(all_idx).values, torch.arange(x.shape[0]))


def test_split_dedupe_first_has_no_twins():
    x = load_earth("volcano")
    train, val, test = split(x, seed=0, dedupe_first=True)
    assert train.shape[0] + val.shape[0] + test.shape[0] == 267
    assert (val.shape[0], test.shape[0]) == (26, 26)
    d = torch.cdist(test, train)
    assert d.min() > 1e-7
    train, _, test = split(x, seed=0)
    assert torch.cdist(test, train).min(dim=1).values.lt(1e-9).float().mean() > 0.5  # the quirk


def test_split_errors():
    x = torch.randn(20, 3)
    with pytest.raises(ValueError, match="sum to 1"):
        split(x, 0, fractions=(0.8, 0.1, 0.2))
    with pytest.raises(ValueError, match="three"):
        split(x, 0, fractions=(0.5, 0.5))
    with pytest.raises(ValueError, match="val split empty"):
        split(torch.randn(5, 3), 0)
    with pytest.raises(ValueError, match="test split empty"):
        split(x, 0, fractions=(0.5, 0.5, 0.0))
    with pytest.raises(ValueError, match="non-negative"):
        split(x, 0, fractions=(1.2, -0.1, -0.1))


# ---------------------------------------------------------------------------------------- load_dataset
def test_load_dataset_earth_and_csv(tmp_path):
    d = load_dataset("flood", seed=2)
    assert isinstance(d["manifold"], Sphere) and d["target"] is None
    assert sum(d[k].shape[0] for k in ("train", "val", "test")) == 4875
    assert d["test"].shape[0] == 487
    path = _write(tmp_path, "lon,lat\n" + "\n".join(f"{b},{a}" for a, b in _rows(30)))
    d = load_dataset(path, seed=0, dedupe=True)
    assert (d["train"].shape[0], d["val"].shape[0], d["test"].shape[0]) == (24, 3, 3)
    deduped = split(load_earth("volcano"), 0, dedupe_first=True)
    assert torch.equal(load_dataset("volcano", dedupe=True)["test"], deduped[2])


def test_load_dataset_synthetic():
    d = load_dataset("wrapped_normal_t2", seed=5, n_synthetic=1000)
    assert d["target"] is not None and d["manifold"] is d["target"].manifold
    assert (d["train"].shape, d["val"].shape, d["test"].shape) == ((800, 2), (100, 2), (100, 2))
    assert torch.isfinite(d["target"].log_prob(d["test"])).all()
    again = load_dataset("wrapped_normal_t2", seed=5, n_synthetic=1000)
    assert torch.equal(d["train"], again["train"])


def test_load_dataset_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as exc_info:
        load_dataset("vulcano")
    msg = str(exc_info.value)
    assert "vulcano" in msg
    for name in EARTH_DATASETS + tuple(SYNTHETIC):
        assert name in msg
