"""The extension entry-point benchmark: per-event latency as CloudStack experiences it.

CloudStack spawns plugin/vxgate_extension.py for every network event, synchronously in
the management server's job thread, and every network command is preceded by an
ensure-network-device spawn (protocol.md §1). Each spawn here does what
NetworkExtensionElement does: serialise the envelope, write it to a fresh payload file
(mode 0600), run `<entry-point> <command> <file> 60` with stderr merged into stdout, read
the output to EOF, wait, delete the file. Its latency is the wall time of all of that.

The network and its public IP are set up through the entry-point itself (ensure, ensure,
implement-network, ensure, assign-ip, as CloudStack implements a network). Then N events
each of ensure-network-device and add-port-forward (public port 1000+i to the same port of
a guest address), interleaved as CloudStack sends them (ensure, then the rule):
  * one spawner: CloudStack's one job; the goals are judged on it;
  * 4 concurrent spawners replaying the same N events: several jobs at once, and the
    proof that a replay changes nothing;
  * the service alone: the same calls as direct HTTP POSTs (a fresh connection each, as
    the entry-point makes), for the split of a spawn's time into interpreter start,
    imports, the entry-point's own code, and HTTP plus service.
The start floors (medians of 50 spawns) are the interpreter alone, the interpreter
importing what the entry-point imports (found with -X importtime), and the entry-point
run without arguments (to its usage error: no file, no network). Each series also counts
CPU: the entry-points', the service's, and everything else's on the machine, which flags
a series that other processes disturbed (this machine has two cores).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import resource
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import extension_payloads as cs
from bench import sysinfo
from bench.allocation import Check, percentile
from bench.service import REPO, Service
from plugin.vxgate_extension import without_secrets

ENTRY_POINT = REPO / "plugin" / "vxgate_extension.py"
ENSURE, FORWARD = "ensure-network-device", "add-port-forward"
COMMANDS = (ENSURE, FORWARD)
TIMEOUT_ARG = "60"  # NEE's DEFAULT_SCRIPT_TIMEOUT_SECONDS, passed as argv[3]
SPAWN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
SPAWN_TIMEOUT_S = 120.0
HTTP_TIMEOUT_S = 60.0
SPAWNERS = 4
FLOOR_RUNS = 50
GOAL_P50_MS = 25.0
GOAL_P99_MS = 50.0
OUTPUT_LINES_SHOWN = 2
NOISY_SHARE = 0.15  # what other processes may take of the machine before a series is suspect
MAX_FAILURES_KEPT = 5
LOG_LINES_ON_ERROR = 25

Call = Callable[[str, cs.Envelope], "Run"]


@dataclass(frozen=True)
class Run:
    """One spawn (or one direct request): how long, how it ended, what it printed."""

    latency_ns: int
    ok: bool  # exit 0 (spawn) or HTTP 200 (direct)
    code: int  # exit status, or HTTP status
    output: str  # stripped stdout+stderr, or what the entry-point would have printed


@dataclass(frozen=True)
class Series:
    """One command's runs in one mode, in event order."""

    command: str
    mode: str
    runs: list[Run]

    def _ms(self, p: float) -> float:
        return percentile(sorted(run.latency_ns for run in self.runs), p) / 1e6

    @property
    def p50_ms(self) -> float:
        return self._ms(50)

    @property
    def p90_ms(self) -> float:
        return self._ms(90)

    @property
    def p99_ms(self) -> float:
        return self._ms(99)

    @property
    def max_ms(self) -> float:
        return self._ms(100)

    @property
    def errors(self) -> list[Run]:
        return [run for run in self.runs if not run.ok]


@dataclass(frozen=True)
class CpuSnapshot:
    spawned_s: float  # reaped children: the entry-points (the service is reaped at its end)
    bench_s: float  # this process, all threads
    service: sysinfo.CpuSnapshot  # the service's process group, and the machine


def cpu_snapshot(service: Service) -> CpuSnapshot:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    return CpuSnapshot(children.ru_utime + children.ru_stime, own.ru_utime + own.ru_stime,
                       sysinfo.snapshot(service.pid))


@dataclass(frozen=True)
class PhaseCpu:
    spawned_s: float
    bench_s: float
    service_s: float
    machine_busy_s: float

    @classmethod
    def between(cls, before: CpuSnapshot, after: CpuSnapshot) -> PhaseCpu:
        return cls(after.spawned_s - before.spawned_s, after.bench_s - before.bench_s,
                   after.service.service_s - before.service.service_s,
                   after.service.machine_busy_s - before.service.machine_busy_s)

    @property
    def others_s(self) -> float:
        return max(0.0, self.machine_busy_s - self.spawned_s - self.bench_s - self.service_s)


@dataclass(frozen=True)
class Phase:
    """N event groups (ensure, then a port forward) run by `workers` at a time."""

    name: str
    workers: int
    wall_s: float
    series: dict[str, Series]
    cpu: PhaseCpu

    @property
    def others_share(self) -> float:
        """What other processes took of the machine meanwhile (0-1)."""
        capacity = self.wall_s * sysinfo.cores()
        return self.cpu.others_s / capacity if capacity > 0 else 0.0

    @property
    def per_rule(self) -> Series:
        """Each rule's two spawns together: what one CloudStack job waits for."""
        ensure, forward = self.series[ENSURE].runs, self.series[FORWARD].runs
        runs = [Run(a.latency_ns + b.latency_ns, a.ok and b.ok, 0, "")
                for a, b in zip(ensure, forward, strict=True)]
        return Series("ensure + add-port-forward", self.name, runs)


@dataclass(frozen=True)
class Floor:
    label: str
    argv: list[str]
    median_ms: float
    ok: bool  # every run exited as expected


@dataclass(frozen=True)
class ExtensionReport:
    invocations: int
    service: str
    entry_point_sha256: str
    setup: list[tuple[str, Run]]
    floors: list[Floor]
    imports: list[str]  # what the entry-point imports before main (beyond the interpreter's)
    late_imports: dict[str, int]  # imported while handling an event: {module: cumulative µs}
    sequential: Phase
    concurrent: Phase
    direct: Phase  # the service alone; its FORWARD series creates new rules
    direct_replay: Series
    checks: list[Check]
    log_tail: str = ""

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


# --- spawning as CloudStack does -------------------------------------------------------


def entry_point_argv() -> tuple[list[str], bool]:
    """How to run the entry-point, and whether it is executable as CloudStack requires.

    CloudStack executes the file itself (its shebang picks the interpreter); a file that
    is not executable fails the check, and is run through its shebang line instead so the
    figures still come.
    """
    if os.access(ENTRY_POINT, os.X_OK):
        return [str(ENTRY_POINT)], True
    return [*shebang(), str(ENTRY_POINT)], False


def shebang() -> list[str]:
    with ENTRY_POINT.open("rb") as handle:
        first = handle.readline().decode().strip()
    if not first.startswith("#!"):
        raise RuntimeError(f"{ENTRY_POINT}: no #! line")
    return first[2:].split()


class Spawner:
    """Runs the entry-point for one event as NetworkExtensionElement does."""

    def __init__(self, argv: list[str], payload_dir: Path) -> None:
        self.argv = argv
        self.payload_dir = payload_dir

    def __call__(self, command: str, event: cs.Envelope) -> Run:
        start = time.perf_counter_ns()
        data = json.dumps(event, separators=(",", ":")).encode()  # Gson.toJson
        descriptor, path = tempfile.mkstemp(prefix=f"cs-extnet-{command}-", suffix=".payload",
                                            dir=self.payload_dir)  # mode 0600
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
            code, output = run_process([*self.argv, command, path, TIMEOUT_ARG],
                                       self.payload_dir)
        finally:
            os.unlink(path)
        return Run(time.perf_counter_ns() - start, code == 0, code, output)


def run_process(argv: list[str], cwd: Path) -> tuple[int, str]:
    """Exit status and stripped output (stderr merged into stdout, read to EOF)."""
    try:
        completed = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, env=SPAWN_ENV, cwd=cwd,
                                   timeout=SPAWN_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:  # run() has killed the child
        return -1, f"(bench: no exit within {SPAWN_TIMEOUT_S:g} s)"
    return completed.returncode, completed.stdout.decode(errors="replace").strip()


def measure_floor(label: str, argv: list[str], expected_code: int, cwd: Path,
                  runs: int = FLOOR_RUNS) -> Floor:
    latencies, ok = [], True
    for _ in range(runs):
        start = time.perf_counter_ns()
        code, _output = run_process(argv, cwd)
        latencies.append(time.perf_counter_ns() - start)
        ok = ok and code == expected_code
    return Floor(label, argv, statistics.median(latencies) / 1e6, ok)


# --- the service alone -----------------------------------------------------------------


def direct_call(service: Service) -> Call:
    """POST the event as the entry-point would send it, on a fresh connection."""
    headers = {**service.headers(), "Connection": "close"}

    def call(command: str, event: cs.Envelope) -> Run:
        body = json.dumps(without_secrets(event), separators=(",", ":")).encode()
        start = time.perf_counter_ns()
        connection = http.client.HTTPConnection(service.host, service.port,
                                                timeout=HTTP_TIMEOUT_S)
        try:
            connection.request("POST", f"/v1/cloudstack/{command}", body=body, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        elapsed = time.perf_counter_ns() - start
        ok = response.status == 200
        output = _printed(raw) if ok else raw.decode(errors="replace").strip()
        return Run(elapsed, ok, response.status, output)

    return call


def _printed(raw: bytes) -> str:
    """What the entry-point prints for a 200 answer: its `output`, if any."""
    answer = _json(raw.decode(errors="replace")) if raw else None
    output = answer.get("output") if isinstance(answer, dict) else None
    if output is None:
        return ""
    return output if isinstance(output, str) else json.dumps(output, separators=(",", ":"))


# --- running ---------------------------------------------------------------------------


def run_phase(name: str, call: Call, groups: Sequence[Sequence[tuple[str, cs.Envelope]]],
              workers: int, service: Service) -> Phase:
    """Group i (ensure, then port forward i) in order; `workers` groups at a time."""
    results: list[list[Run]] = [[] for _ in groups]

    def work(index: int) -> None:
        results[index] = [call(command, event) for command, event in groups[index]]

    before = cpu_snapshot(service)
    start = time.perf_counter()
    if workers == 1:
        for index in range(len(groups)):
            work(index)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(work, range(len(groups))))
    wall_s = time.perf_counter() - start
    cpu = PhaseCpu.between(before, cpu_snapshot(service))
    commands = [command for command, _event in groups[0]] if groups else []
    series = {command: Series(command, name, [result[k] for result in results])
              for k, command in enumerate(commands)}
    return Phase(name, workers, wall_s, series, cpu)


def run_extension(service: Service, invocations: int) -> ExtensionReport:
    """Seed, set up through the entry-point, time N events per command three ways, check."""
    if not 0 < invocations <= (cs.MAX_PORT - cs.FIRST_PORT + 1) // 2:
        raise ValueError(f"invocations: 1 to {(cs.MAX_PORT - cs.FIRST_PORT + 1) // 2}")
    service.ok("PUT", f"/v1/zones/{cs.ZONE_ID}", {})
    service.ok("PUT", f"/v1/physical-networks/{cs.PHYSNET_ID}", cs.PHYSNET)
    details = cs.registration(f"http://{service.host}:{service.port}", service.token)
    argv, executable = entry_point_argv()
    network = cs.Network()
    with tempfile.TemporaryDirectory(prefix="vxgate-extension-bench-") as scratch:
        spawn = Spawner(argv, Path(scratch))
        setup = set_up(spawn, details, network)
        if not all(run.ok for _command, run in setup):  # nothing to measure against
            raise RuntimeError("set-up through the entry-point failed: "
                               + " ".join(f"{command} {run.code}" for command, run in setup)
                               + _first_failure(run for _command, run in setup))
        ensure = cs.ensure(details, network)
        floors, imports = measure_floors(argv, Path(scratch))
        late = late_imports(Path(scratch), ensure, imports)
        groups = [[(ENSURE, ensure), (FORWARD, cs.add_port_forward(details, network, i))]
                  for i in range(invocations)]
        sequential = run_phase("1 spawner", spawn, groups, 1, service)
        created = state(service)
        concurrent = run_phase(f"{SPAWNERS} spawners, replay", spawn, groups, SPAWNERS, service)
        replayed = state(service)
    call = direct_call(service)
    fresh = [[(ENSURE, ensure), (FORWARD, cs.add_port_forward(details, network, invocations + i))]
             for i in range(invocations)]
    direct = run_phase("service alone", call, fresh, 1, service)
    direct_replay = run_phase("service alone, replay", call, [[group[1]] for group in fresh], 1,
                              service)
    removed = [remove_forward(service, invocations + i) for i in range(invocations)]
    after_direct = state(service)
    checks = [
        Check("entry-point executable", executable,
              f"{ENTRY_POINT.relative_to(REPO)} (CloudStack runs only an executable file)"),
        Check("start floors exited as expected", all(floor.ok for floor in floors),
              "0, 0, and 2 (usage) for the entry-point run without arguments"),
        Check("entry-point under -X importtime answered", late is not None,
              "one ensure-network-device, for the list of modules imported per event"),
        *check_setup(setup),
        *check_runs(network, sequential, concurrent, direct, direct_replay.series[FORWARD]),
        *check_state(invocations, created, replayed, after_direct, removed),
    ]
    failed = any(series.errors for phase in (sequential, concurrent, direct)
                 for series in phase.series.values())
    return ExtensionReport(invocations, f"{service.backend}, {service.workers} workers x "
                           f"{service.threads} threads", _sha256(ENTRY_POINT), setup, floors,
                           imports, late or {}, sequential, concurrent, direct,
                           direct_replay.series[FORWARD], checks,
                           service.log_tail(LOG_LINES_ON_ERROR) if failed else "")


def set_up(spawn: Spawner, details: dict[str, str], network: cs.Network) -> list[tuple[str, Run]]:
    """CloudStack's implement(): ensure twice, implement-network, then assign-ip (ensured)."""
    steps: list[tuple[str, Run]] = []
    for command in (ENSURE, ENSURE, "implement-network", ENSURE, "assign-ip"):
        if command == ENSURE:
            run = spawn(command, cs.ensure(details, network))
            if run.ok:
                network.remember(run.output)
        elif command == "implement-network":
            network.state = "implementing"
            run = spawn(command, cs.implement(details, network))
            if run.ok:
                network.implemented(run.output)
        else:
            run = spawn(command, cs.assign_ip(details, network))
        steps.append((command, run))
        if not run.ok:
            break
    return steps


def measure_floors(argv: list[str], cwd: Path) -> tuple[list[Floor], list[str]]:
    """Interpreter start; + the entry-point's imports; the entry-point itself, run without
    arguments (compiled and run to its usage error, exit 2: no file, no network)."""
    interpreter = shebang()
    startup = _imported([*interpreter, "-X", "importtime", "-c", "pass"], cwd)
    usage = _imported([*interpreter, "-X", "importtime", str(ENTRY_POINT)], cwd)
    imports = [name for name in usage if name not in startup]
    code = f"import {', '.join(imports)}" if imports else "pass"
    return [
        measure_floor("interpreter start", [*interpreter, "-c", "pass"], 0, cwd),
        measure_floor("with the entry-point's imports", [*interpreter, "-c", code], 0, cwd),
        measure_floor("the entry-point without I/O", argv, 2, cwd),
    ], imports


def late_imports(cwd: Path, ensure: cs.Envelope, imports: list[str]) -> dict[str, int] | None:
    """Modules the entry-point imports only while handling an event (one ensure, run under
    -X importtime): {module: cumulative µs}; None if that run failed."""
    interpreter = shebang()
    startup = _imported([*interpreter, "-X", "importtime", "-c", "pass"], cwd)
    spawn = Spawner([*interpreter, "-X", "importtime", str(ENTRY_POINT)], cwd)
    run = spawn(ENSURE, ensure)  # stderr merged: the importtime lines come with the answer
    if not run.ok:
        return None
    found = _top_level(run.output)
    return {name: micros for name, micros in found.items()
            if name not in startup and name not in imports}


def _imported(argv: list[str], cwd: Path) -> dict[str, int]:
    completed = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=SPAWN_ENV,
                               cwd=cwd, timeout=SPAWN_TIMEOUT_S, check=False)
    return _top_level(completed.stderr.decode(errors="replace"))


def _top_level(importtime: str) -> dict[str, int]:
    """{module: cumulative µs} of the top-level imports in `-X importtime` output, whose
    lines read "import time: <self> | <cumulative> | <two spaces per level><module>"."""
    found = {}
    for line in importtime.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(fields) != 3:
            continue
        cumulative, name = fields[1].strip(), fields[2]
        if cumulative.isdigit() and name[:1] == " " and name[1:2] != " ":
            found[name.strip()] = int(cumulative)
    return found


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def state(service: Service) -> dict[str, Any]:
    ip = f"/v1/zones/{cs.ZONE_ID}/public-ips/{cs.PUBLIC_IP}"
    return {"port-forwards": service.ok("GET", f"{ip}/port-forwards"),
            "public-ip": service.ok("GET", ip),
            "network": service.ok("GET", f"/v1/networks/{cs.NETWORK_ID}")}


def remove_forward(service: Service, index: int) -> int:
    status, _answer = service.call(
        "DELETE", f"/v1/zones/{cs.ZONE_ID}/public-ips/{cs.PUBLIC_IP}/port-forwards/"
                  f"{cs.PROTOCOL}/{cs.port(index)}")
    return status


# --- checks ----------------------------------------------------------------------------


def check_setup(setup: list[tuple[str, Run]]) -> list[Check]:
    codes = " ".join(f"{command} {run.code}" for command, run in setup)
    implement = next((run for command, run in setup if command == "implement-network"), None)
    answer = _json(implement.output) if implement is not None and implement.ok else None
    vxlan = isinstance(answer, dict) and answer.get("network.broadcast_domain_type") == "Vxlan" \
        and str(answer.get("network.broadcast_uri", "")).startswith("vxlan://")
    return [
        Check("set-up through the entry-point", len(setup) == 5 and all(r.ok for _c, r in setup),
              codes + _first_failure(run for _command, run in setup)),
        Check("implement-network wrote back a VXLAN broadcast URI", vxlan,
              implement.output[:120] if implement is not None else "not run"),
    ]


def check_runs(network: cs.Network, sequential: Phase, concurrent: Phase, direct: Phase,
               direct_replay: Series) -> list[Check]:
    checks = []
    for phase in (sequential, concurrent, direct):
        for series in phase.series.values():
            checks.append(_zero_errors(series))
    checks.append(_zero_errors(direct_replay))
    ensures = [run for phase in (sequential, concurrent, direct)
               for run in phase.series[ENSURE].runs if run.ok]
    same = sum(1 for run in ensures if run.output == network.stored_details)
    checks.append(Check("ensure-network-device printed the stored details every time",
                        same == len(ensures) and "\n" not in network.stored_details,
                        f"{same}/{len(ensures)} identical one-line answers: "
                        f"{network.stored_details[:100]}"))
    forwards = [run for series in (*(phase.series[FORWARD] for phase in (sequential, concurrent,
                                                                         direct)), direct_replay)
                for run in series.runs if run.ok]
    quiet = sum(1 for run in forwards if run.output == "")
    checks.append(Check("add-port-forward printed nothing", quiet == len(forwards),
                        f"{quiet}/{len(forwards)} silent"))
    return checks


def check_state(invocations: int, created: dict[str, Any], replayed: dict[str, Any],
                after_direct: dict[str, Any], removed: list[int]) -> list[Check]:
    listed = created["port-forwards"]
    expected = [cs.expected_forward(i) for i in range(invocations)]
    return [
        Check("port forwards exist", _sorted(listed) == _sorted(expected),
              f"{len(listed)} listed at GET /v1/zones/{cs.ZONE_ID}/public-ips/{cs.PUBLIC_IP}"
              f"/port-forwards, {invocations} expected (ports {cs.port(0)}-"
              f"{cs.port(invocations - 1)} {cs.PROTOCOL} to {cs.PRIVATE_IP})"),
        Check("replaying add-port-forward changed nothing", replayed == created,
              "port forwards, public IP and network identical before and after the "
              f"{SPAWNERS}-spawner replay" if replayed == created else _diff(created, replayed)),
        Check("direct-HTTP rules removed again",
              all(status == 204 for status in removed) and after_direct == created,
              f"{sum(1 for s in removed if s == 204)}/{len(removed)} deleted (204); state "
              f"{'as after the first series' if after_direct == created else 'DIFFERS'}"),
    ]


def _zero_errors(series: Series) -> Check:
    return Check(f"{series.command} ({series.mode}): zero errors", not series.errors,
                 f"{len(series.errors)} of {len(series.runs)} failed"
                 + _first_failure(series.runs))


def _first_failure(runs: Iterable[Run]) -> str:
    failure = next((run for run in runs if not run.ok), None)
    if failure is None:
        return ""
    lines = failure.output.splitlines()[:OUTPUT_LINES_SHOWN] or ["(no output)"]
    return f"; first: exit/status {failure.code}: " + " | ".join(lines)


def _sorted(forwards: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(forward, sort_keys=True) for forward in forwards)


def _diff(before: dict[str, Any], after: dict[str, Any]) -> str:
    changed = [key for key in before if before[key] != after.get(key)]
    return f"changed: {', '.join(changed)}"


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None
