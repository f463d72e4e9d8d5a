"""Package-level behaviour: quiet imports, public names, the examples run."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# matplotlib releases before 3.10.8 call pyparsing names that pyparsing 3.3 deprecates; that noise is
# theirs (attributed to these modules of matplotlib), not this package's
THIRD_PARTY_NOISE = ("-W", "ignore::DeprecationWarning:matplotlib._fontconfig_pattern",
                     "-W", "ignore::DeprecationWarning:matplotlib._mathtext")


def _run(code: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *flags, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("flag", ["always", "error"])
def test_import_prints_and_warns_nothing(flag):
    res = _run("import manifolds, manifold_flows, manifold_flows.cli, manifold_flows.datasets", "-W", flag)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "" and res.stderr == "", (res.stdout, res.stderr[:500])


def test_import_leaves_other_warnings_alone():
    code = (
        "import warnings, numpy, torch  # these add filters of their own\n"
        "before = list(warnings.filters)\n"
        "import manifolds\n"
        "assert warnings.filters == before, 'import changed the warning filters'\n"
        "warnings.warn('user warning survives', DeprecationWarning)\n"
    )
    res = _run(code, "-W", "always")
    assert res.returncode == 0, res.stderr
    assert "user warning survives" in res.stderr


def test_public_names():
    import manifolds

    for name in ["Manifold", "Sphere", "FlatTorus", "Euclidean", "ProductManifold"]:
        assert name in manifolds.__all__ and hasattr(manifolds, name)
    import geoopt

    assert issubclass(manifolds.Sphere, geoopt.Manifold)
    import manifold_flows

    for name in ["RFM", "MoserFlow", "PPD", "VectorField", "EMA", "odeint", "log_likelihood", "sample", "time_grid",
                 "divergence", "train", "TrainConfig", "datasets"]:
        assert name in manifold_flows.__all__ and hasattr(manifold_flows, name), name


@pytest.mark.parametrize(
    "script,args,expect",
    [
        ("frechet_mean.py", ["--n", "200", "--steps", "300"], "agreement: OK"),
        ("train_earth.py", ["--data", "volcano", "--steps", "20"], "test NLL"),
        ("known_density.py", ["--target", "vmf_mixture_s2", "--steps", "20"], "gap"),
    ],
)
def test_example_runs(script, args, expect, tmp_path):
    if script != "frechet_mean.py":
        args = [*args, "--out", str(tmp_path / "run")]
    res = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", *THIRD_PARTY_NOISE, str(ROOT / "examples" / script), *args],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert expect in res.stdout


def test_gpu_benchmark_skips_cleanly_without_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present: the benchmark would run for real")
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py")], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert res.returncode == 0 and "no CUDA device here; skipped" in res.stdout, res.stderr


def test_setup_cfg_lists_every_package():
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    found = {str(p.parent.relative_to(ROOT)).replace("/", ".") for p in ROOT.glob("manifold*/**/__init__.py")}
    found |= {"manifold_flows.datasets"}  # installed from datasets/ (package_dir)
    assert found <= listed, f"missing from setup.cfg packages: {sorted(found - listed)}"
