"""Compare rendered text with a golden file; VXGATE_REGEN_GOLDENS=1 rewrites the file."""

from __future__ import annotations

import os
from pathlib import Path

REGENERATE = os.environ.get("VXGATE_REGEN_GOLDENS") == "1"


def check_golden(path: Path, text: str) -> None:
    if REGENERATE:
        path.write_text(text)
        return
    assert path.exists(), f"{path} is missing: run with VXGATE_REGEN_GOLDENS=1 to create it"
    expected = path.read_text()
    assert text == expected, (
        f"{path.name} differs from the rendered text; if the change is intended, "
        "regenerate with VXGATE_REGEN_GOLDENS=1 and review the diff"
    )
