"""What an operator does once on a CloudStack management server for vxgate: install the
entry-point in the extensions directory and run `vxgate cloudstack register` (README,
docs/cloudstack-registration.md), here against the stand-in."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from bench.service import console_script, with_this_checkout
from provider_service.cloudstack_registration import extension_names
from simulator.cloudstack.element import REPO
from simulator.cloudstack.server import RunningCloudStack

ENTRY_POINT_FILES = ("vxgate_extension.py", "plugin_legacy.py")


def install_entry_point(extensions_dir: Path, name: str = "vxgate") -> Path:
    """`install -m 0755 plugin/*.py <extensions>/<name>/`, as on every management server."""
    directory = extensions_dir / name
    directory.mkdir(parents=True, exist_ok=True)
    for file in ENTRY_POINT_FILES:
        shutil.copy(REPO / "plugin" / file, directory / file)
        (directory / file).chmod(0o755)
    return directory / ENTRY_POINT_FILES[0]


def install_entry_points(extensions_dir: Path) -> None:
    """The entry-point under each extension `vxgate cloudstack register` creates."""
    for name in extension_names():
        install_entry_point(extensions_dir, name)


def register(cloud: RunningCloudStack, physical_network: str, service_url: str,
             token_file: Path) -> list[str]:
    """`vxgate cloudstack register`, with the `cs` client's environment; its lines."""
    done = subprocess.run(
        [console_script("vxgate"), "cloudstack", "register",
         "--physical-network", physical_network,
         "--service-url", service_url, "--token-file", str(token_file)],
        env={**with_this_checkout(os.environ), **cloud.environment()},
        capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"vxgate cloudstack register: exit {done.returncode}: "
                           f"{(done.stderr or done.stdout).strip()}")
    return done.stdout.splitlines()
