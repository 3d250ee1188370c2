"""packaging/: the sample configuration explains every setting the code reads, the
systemd units pass systemd's own checks, and the install script is sound shell.

The sample cannot rot: a new VXGATE_* variable in the code, a CLOUDSTACK_* variable the
admin commands read, or a new option of vxgate-service or vxgate-agent, fails here until
packaging/vxgate.env.sample explains it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from agent import main as agent_main
from provider_service import serve

REPO = Path(__file__).resolve().parents[2]
PACKAGING = REPO / "packaging"
SAMPLE = PACKAGING / "vxgate.env.sample"
UNITS = ("vxgate-service.service", "vxgate-agent.service", "vxgate-audit.service",
         "vxgate-audit.timer")
SERVICES = tuple(unit for unit in UNITS if unit.endswith(".service"))
INSTALLED_BIN = "/opt/vxgate/venv/bin/"
CODE_DIRS = ("provider_service", "agent", "plugin")
VARIABLE_RE = re.compile(r"\bVXGATE_[A-Z0-9_]+\b")
# Quoted: the names looked up in the environment, not constants such as CLOUDSTACK_ONLY.
CLOUDSTACK_VARIABLE_RE = re.compile(r"[\"'](CLOUDSTACK_[A-Z0-9_]+)[\"']")
# Names in the code that look like settings but are not read from the environment.
NOT_ENVIRONMENT = {"VXGATE_SETTINGS": "the Flask app.config key of the parsed Settings"}
TIMEOUT_S = 120.0


def sample_text() -> str:
    return SAMPLE.read_text(encoding="utf-8")


def sample_variables() -> set[str]:
    """Variables the sample assigns, commented out (`#NAME=`) or not."""
    return set(re.findall(r"^#?((?:VXGATE|CLOUDSTACK)_[A-Z0-9_]+)=", sample_text(),
                          re.MULTILINE))


def code_texts() -> list[str]:
    return [path.read_text(encoding="utf-8") for directory in CODE_DIRS
            for path in (REPO / directory).rglob("*.py") if "migrations" not in path.parts]


def variables_in_code() -> set[str]:
    found: set[str] = set()
    for text in code_texts():
        found.update(VARIABLE_RE.findall(text))
        found.update(CLOUDSTACK_VARIABLE_RE.findall(text))
    return found - NOT_ENVIRONMENT.keys()


def explains_option(option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", sample_text()) is not None


def options_of(parse_args: Callable[[list[str]], object],
               capsys: pytest.CaptureFixture[str]) -> set[str]:
    """The long options a command's --help lists (argparse prints it and exits)."""
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", capsys.readouterr().out)) - {"--help"}


def test_the_code_reads_the_settings_we_know() -> None:
    # Guards the scan itself: config.py's settings must be found.
    assert {"VXGATE_DATABASE_URL", "VXGATE_STATE_DIR", "VXGATE_ADMIN_TOKEN",
            "VXGATE_ADMIN_TOKEN_FILE"} <= variables_in_code()
    # and the audit unit's credentials, the register and audit commands' (not constants).
    cloudstack = {v for v in variables_in_code() if v.startswith("CLOUDSTACK_")}
    assert cloudstack == {"CLOUDSTACK_ENDPOINT", "CLOUDSTACK_KEY", "CLOUDSTACK_SECRET"}


def test_every_environment_variable_is_in_the_sample() -> None:
    missing = sorted(variables_in_code() - sample_variables())
    assert not missing, f"explain these in {SAMPLE.name}: {', '.join(missing)}"


def test_every_service_option_is_in_the_sample(capsys: pytest.CaptureFixture[str]) -> None:
    options = options_of(serve.parse_args, capsys)
    assert {"--bind", "--workers", "--threads"} <= options
    missing = sorted(option for option in options if not explains_option(option))
    assert not missing, f"explain under VXGATE_SERVICE_OPTS: {', '.join(missing)}"


def test_every_agent_option_is_in_the_sample(capsys: pytest.CaptureFixture[str]) -> None:
    options = options_of(agent_main.parse_args, capsys)
    assert {"--service", "--device", "--token-file", "--softgate"} <= options
    missing = sorted(option for option in options if not explains_option(option))
    assert not missing, f"explain under VXGATE_AGENT_OPTS: {', '.join(missing)}"


def test_every_variable_a_unit_uses_is_in_the_sample() -> None:
    for unit in SERVICES:
        text = (PACKAGING / "systemd" / unit).read_text(encoding="utf-8")
        assert "EnvironmentFile=/etc/vxgate/vxgate.env\n" in text
        used = set(re.findall(r"\$\{?((?:VXGATE|CLOUDSTACK)_[A-Z0-9_]+)", text))
        assert used <= sample_variables(), f"{unit}: {sorted(used - sample_variables())}"
    for unit in ("vxgate-service.service", "vxgate-agent.service"):
        text = (PACKAGING / "systemd" / unit).read_text(encoding="utf-8")
        assert re.search(r"\$\{?VXGATE_", text), f"{unit} passes no settings from the file"


def test_audit_unit_reports_only_and_reads_credentials_apart() -> None:
    # --repair deletes from the service; unattended, it is a drop-in's choice (see unit).
    text = (PACKAGING / "systemd" / "vxgate-audit.service").read_text(encoding="utf-8")
    assert re.findall(r"^ExecStart=(.*)$", text, re.MULTILINE) == [
        f"{INSTALLED_BIN}vxgate cloudstack audit"]
    assert "EnvironmentFile=/etc/vxgate/cloudstack.env\n" in text
    for unit in ("vxgate-service.service", "vxgate-agent.service"):
        assert "cloudstack.env" not in (PACKAGING / "systemd" / unit).read_text()


def test_sample_lines_are_comments_or_assignments() -> None:
    # systemd's EnvironmentFile= and `set -a; . file` must both read it the same way.
    for number, line in enumerate(sample_text().splitlines(), 1):
        assert (not line or line.startswith("#")
                or re.fullmatch(r'[A-Z][A-Z0-9_]*=("[^"$`\\]*"|[^\s"\'$`\\]*)', line)), \
            f"{SAMPLE.name}:{number}: {line!r}"


def units_for_verify(tmp_path: Path) -> list[Path]:
    """The units with their executables moved to stubs in tmp_path: `verify` insists that
    ExecStart names an executable file, and /opt/vxgate is not installed here."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    units = []
    for unit in UNITS:
        text = (PACKAGING / "systemd" / unit).read_text(encoding="utf-8")
        for program in re.findall(re.escape(INSTALLED_BIN) + r"(\S+)", text):
            stub = bin_dir / program
            stub.write_text("#!/bin/sh\n")
            stub.chmod(0o755)
        copy = tmp_path / unit
        copy.write_text(text.replace(INSTALLED_BIN, f"{bin_dir}/"), encoding="utf-8")
        units.append(copy)
    return units


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (Debian package systemd)")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    result = run(["systemd-analyze", "verify", *map(str, units_for_verify(tmp_path))])
    # verify exits 0 on unknown keys and bad values: it only warns. Any output is a fault.
    assert result.returncode == 0 and not result.stdout and not result.stderr, \
        result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (Debian package systemd)")
@pytest.mark.parametrize("unit", ["vxgate-service.service", "vxgate-audit.service"])
def test_service_and_audit_units_are_hardened(unit: str, tmp_path: Path) -> None:
    copy = units_for_verify(tmp_path)[UNITS.index(unit)]
    result = run(["systemd-analyze", "security", "--offline=true", str(copy)])
    level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert level is not None, result.stdout + result.stderr
    # systemd's scale: 0 (locked down) to 10 (exposed); "OK" is below 2.
    assert float(level.group(1)) < 2.0, result.stdout


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None
                    or shutil.which("systemd-tmpfiles") is None,
                    reason="systemd-sysusers/systemd-tmpfiles are not installed")
def test_sysusers_and_tmpfiles_apply_in_a_scratch_root(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    sysusers = run(["systemd-sysusers", f"--root={tmp_path}",
                    str(PACKAGING / "sysusers.d" / "vxgate.conf")])
    assert sysusers.returncode == 0, sysusers.stderr
    assert re.search(r"^vxgate:x:\d+:\d+:.*:/var/lib/vxgate:/usr/sbin/nologin$",
                     (tmp_path / "etc" / "passwd").read_text(), re.MULTILINE)
    tmpfiles = run(["systemd-tmpfiles", f"--root={tmp_path}", "--create",
                    str(PACKAGING / "tmpfiles.d" / "vxgate.conf")])
    assert tmpfiles.returncode == 0, tmpfiles.stderr
    assert (tmp_path / "etc" / "vxgate").stat().st_mode & 0o777 == 0o700


def test_install_script_is_valid_shell() -> None:
    script = REPO / "scripts" / "install.sh"
    syntax = run(["bash", "-n", str(script)])
    assert syntax.returncode == 0, syntax.stderr
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed: syntax checked only")
    lint = run(["shellcheck", str(script)])
    assert lint.returncode == 0, lint.stdout
