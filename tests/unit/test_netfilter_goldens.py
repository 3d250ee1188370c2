"""Golden nft rulesets: the renderer's output for sample states, and nft accepts them.

Regenerate after an intended change with VXGATE_REGEN_GOLDENS=1 and read the diff.
The nft check runs `nft -c -f` (validated by the kernel, nothing committed) in a fresh
network namespace (`unshare --net`), so it needs root: without root it skips and says
why, under CI it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.netfilter_compile import compile_domain
from agent.netfilter_render import render_full, render_tables, render_teardown
from agent.netfilter_state import RoutingDomain

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "golden" / "nft"
SAMPLES = sorted(path.stem for path in GOLDEN_DIR.glob("*.json"))
REGEN = os.environ.get("VXGATE_REGEN_GOLDENS") == "1"


def sample(name: str) -> RoutingDomain:
    return RoutingDomain.from_json(json.loads((GOLDEN_DIR / f"{name}.json").read_text()))


def require_nft_root() -> None:
    reason = ""
    if os.geteuid() != 0:
        reason = "nft -c needs root (CAP_NET_ADMIN) and a network namespace"
    elif shutil.which("nft") is None or shutil.which("unshare") is None:
        reason = "nft or unshare is not installed"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the nft checks: {reason}")
        pytest.skip(reason)


def nft_check(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["unshare", "--net", "nft", "-c", "-f", "-"], input=text,
                          capture_output=True, text=True, timeout=30, check=False)


def test_samples_cover_the_required_states() -> None:
    assert {"isolated", "vpc", "routed", "empty"} <= set(SAMPLES)


@pytest.mark.parametrize("name", SAMPLES)
def test_golden(name: str) -> None:
    path = GOLDEN_DIR / f"{name}.nft"
    text = render_full(sample(name))
    if REGEN:
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with VXGATE_REGEN_GOLDENS=1"
    assert text == path.read_text(), f"{name}: rendering changed; regenerate and review"


@pytest.mark.parametrize("name", SAMPLES)
def test_nft_accepts_golden(name: str) -> None:
    require_nft_root()
    done = nft_check((GOLDEN_DIR / f"{name}.nft").read_text())
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", SAMPLES)
def test_nft_accepts_the_fresh_form_in_a_new_namespace(name: str) -> None:
    """The ruleset for a namespace just made: the golden without `delete table`."""
    require_nft_root()
    text = render_tables(compile_domain(sample(name)), fresh=True)
    assert "delete table" not in text
    done = nft_check(text)
    assert done.returncode == 0, done.stderr


def test_nft_accepts_teardown() -> None:
    require_nft_root()
    done = nft_check(render_teardown())
    assert done.returncode == 0, done.stderr


def test_nft_rejects_a_broken_ruleset() -> None:
    """The check is not vacuous: a golden with one bad element fails it."""
    require_nft_root()
    text = (GOLDEN_DIR / "isolated.nft").read_text()
    broken = text.replace("203.0.113.3 : 10.1.1.11", "203.0.113.3 : 10.1.1.300")
    assert broken != text
    done = nft_check(broken)
    assert done.returncode != 0
    assert "Error" in done.stderr
