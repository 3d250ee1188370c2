"""Every FRR golden is fed to real FRR: vtysh's parser and frr-reload.py, offline.

vtysh -C catches syntax errors only (lab FINDINGS §6); frr-reload.py --test parses the
file into FRR's own config model, which the live-fabric scenario then compares with the
running daemons. A deliberately broken config must be rejected by both.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from simulator.fabric import FRR_RELOAD, reload_delta

GOLDEN_DIR = Path(__file__).parents[1] / "golden" / "frr"
GOLDENS = sorted(GOLDEN_DIR.glob("*.conf"))


def _frr_missing() -> str:
    if shutil.which("vtysh") is None:
        return "vtysh is not installed (Debian package frr)"
    if not FRR_RELOAD.exists():
        return f"{FRR_RELOAD} is missing (Debian package frr-pythontools)"
    return ""


@pytest.fixture(scope="module", autouse=True)
def real_frr() -> None:
    reason = _frr_missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must validate the goldens with real FRR: {reason}")
        pytest.skip(reason)


def vtysh_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["vtysh", "-C", "-f", str(path)], capture_output=True, text=True,
                          check=False)


def frr_reload_test(running: Path, candidate: Path, confdir: Path
                    ) -> subprocess.CompletedProcess[str]:
    (confdir / "vtysh.conf").write_text("service integrated-vtysh-config\n")
    return subprocess.run(
        [str(FRR_RELOAD), "--test", "--stdout", "--input", str(running), "--confdir",
         str(confdir), "--rundir", str(confdir), str(candidate)],
        capture_output=True, text=True, check=False)


def test_there_is_a_golden_for_every_case() -> None:
    from tests.golden.frr_cases import CASES

    assert {path.stem for path in GOLDENS} == set(CASES)


@pytest.mark.parametrize("golden", GOLDENS, ids=lambda path: path.stem)
def test_vtysh_accepts_golden(golden: Path) -> None:
    result = vtysh_check(golden)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("golden", GOLDENS, ids=lambda path: path.stem)
def test_frr_reload_parses_golden(golden: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.conf"
    empty.write_text("")
    from_nothing = frr_reload_test(empty, golden, tmp_path)
    assert from_nothing.returncode == 0 and "ERROR" not in from_nothing.stderr, (
        from_nothing.stderr)
    assert "router bgp" in from_nothing.stdout
    # Against itself: FRR's model of the file round-trips to no change at all.
    against_itself = frr_reload_test(golden, golden, tmp_path)
    assert against_itself.returncode == 0
    assert reload_delta(against_itself.stdout) == []


def test_broken_config_is_rejected(tmp_path: Path) -> None:
    text = (GOLDEN_DIR / "spine.conf").read_text()
    broken = tmp_path / "broken.conf"
    broken.write_text(text.replace("remote-as external", "remote-as externall"))
    assert broken.read_text() != text
    checked = vtysh_check(broken)
    assert checked.returncode != 0 and "Unknown command" in checked.stdout + checked.stderr
    empty = tmp_path / "empty.conf"
    empty.write_text("")
    reloaded = frr_reload_test(empty, broken, tmp_path)
    assert reloaded.returncode != 0 and "vtysh failed" in reloaded.stderr
