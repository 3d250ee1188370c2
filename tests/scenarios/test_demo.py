"""The README's first command, as CI runs it: the demo's report passes as a whole."""

from __future__ import annotations

import os
import subprocess
import sys

from bench.service import REPO, with_this_checkout
from tests.scenarios.conftest import require_fabric_prerequisites


def test_the_demo_passes_every_check() -> None:
    require_fabric_prerequisites()
    done = subprocess.run([sys.executable, "-m", "simulator.demo", "--once"], cwd=REPO,
                          env=with_this_checkout(os.environ),
                          capture_output=True, text=True, timeout=300, check=False)
    print(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "ALL PASSED" in done.stdout
    assert "FAIL " not in done.stdout
