"""Every Python block in README.md runs as printed."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# matplotlib releases before 3.10.8 call pyparsing names that pyparsing 3.3 deprecates; that noise is
# theirs (attributed to these modules of matplotlib), not this package's
THIRD_PARTY_NOISE = ("-W", "ignore::DeprecationWarning:matplotlib._fontconfig_pattern",
                     "-W", "ignore::DeprecationWarning:matplotlib._mathtext")
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_block_runs(i):
    res = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", *THIRD_PARTY_NOISE, "-c", BLOCKS[i]],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
