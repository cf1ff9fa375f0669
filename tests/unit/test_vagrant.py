import shutil
import subprocess
from pathlib import Path

import pytest

VAGRANT_DIR = Path(__file__).resolve().parents[2] / "vagrant"


def test_vagrantfile_runs_make_test() -> None:
    text = (VAGRANT_DIR / "Vagrantfile").read_text()
    assert "make test" in text and "config.vm.box" in text


@pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant is not installed on this machine")
def test_vagrant_validate() -> None:
    r = subprocess.run(
        ["vagrant", "validate", "--ignore-provider"],
        cwd=VAGRANT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
