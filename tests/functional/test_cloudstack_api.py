"""The CloudStack API stand-in's HTTP layer, through the real cs client and its command line:
GET and POST, signature versions 2 and 3, paging, async jobs, and the error answers."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cs import CloudStack, CloudStackApiException

from simulator.cloudstack.api import ApiError, ApiServer, ErrorCode, Params, new_id, new_key_pair

KEY, SECRET = new_key_pair()
THINGS = [{"id": str(number), "name": f"thing-{number}"} for number in range(7)]
AWKWARD = {
    "spaces": " two  spaces ", "plus": "a+b", "star": "*", "slash": "/a/b/", "equals": "k=v",
    "amp": "a&b=c", "quotes": "'single' \"double\"", "newline": "one\ntwo\r\n",
    "unicode": "héllo wörld ✓ 日本 🚀", "document": json.dumps({"a": [1, "x y"], "b": None}),
    "percent": "%41%", "tilde": "~user", "empty": "", "semicolon": "a;b,c",
    "zoneId": "sorted before zone_name by Java", "zone_name": "and after by lower-case",
}
job_log: list[str] = []
live_thing = {"state": "Allocated"}
gate = threading.Event()


def _raise(error: Exception) -> Any:
    raise error


def _structured(params: Params) -> dict[str, Any]:
    return {"details": params.map("details"), "tags": params.map("tags"),
            "providers": params.indexed("serviceproviderlist"),
            "services": params.csv("supportedservices")}


def _api() -> ApiServer:
    api = ApiServer({KEY: SECRET})
    api.register("echo", Params.as_dict, kind="sync", object_name="echo")
    api.register("echoStructured", _structured, kind="sync", object_name="echo")
    api.register("echoName", lambda params: {"name": params.required("name")},
                 kind="sync", object_name="echo")
    api.register("deleteThing", lambda params: None, kind="sync", object_name=None)
    api.register("crash", lambda params: _raise(RuntimeError("boom\nsecond line")),
                 kind="sync", object_name="thing")
    api.register("notJson", lambda params: {"id": object()}, kind="sync", object_name="thing")
    api.register("listThings", lambda params: THINGS, kind="list", object_name="thing")
    api.register("listNothing", lambda params: [], kind="list", object_name="thing")

    @api.command("createThing", kind="async", object_name="thing")
    def create_thing(params: Params) -> dict[str, str]:
        job_log.append(params.required("name"))
        return {"id": new_id(), "name": params.required("name")}

    api.register("expungeThing", lambda params: None, kind="async", object_name=None)
    api.register("failThing", lambda params: _raise(
        ApiError(ErrorCode.RESOURCE_IN_USE_ERROR, "thing-1 is in use")),
        kind="async", object_name="thing")
    api.register("crashThing", lambda params: _raise(KeyError("vlan")),
                 kind="async", object_name="thing")
    api.register("implementThing", lambda params: live_thing, kind="async",
                 object_name="thing")
    api.register("waitThing", lambda params: {"opened": gate.wait(10)},
                 kind="async", object_name="thing")
    return api


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with _api().running() as url:
        yield url


def _client(endpoint: str, method: str = "get", version: int = 3,
            secret: str = SECRET) -> CloudStack:
    # A negative expiration is how cs signs with version 2 (no signatureVersion, expires).
    return CloudStack(endpoint, KEY, secret, method=method, poll_interval=0.02,
                      expiration=600 if version == 3 else -1)


@pytest.fixture(params=[("get", 3), ("post", 3), ("get", 2), ("post", 2)],
                ids=lambda p: f"{p[0]}-v{p[1]}")
def client(endpoint: str, request: pytest.FixtureRequest) -> CloudStack:
    return _client(endpoint, *request.param)


def _refused(call: Any, status: int) -> dict[str, Any]:
    """The whole answer to a call refused with HTTP `status`: {"<name>response": error}."""
    with pytest.raises(CloudStackApiException) as raised:
        call()
    response = raised.value.response
    assert response.status_code == status
    answer: dict[str, Any] = response.json()
    [error] = answer.values()
    assert error == raised.value.error and error["errorcode"] == status
    return answer


def _finished(client: CloudStack, job_id: str) -> dict[str, Any]:
    for _ in range(500):
        job: dict[str, Any] = client.queryAsyncJobResult(jobid=job_id)
        if job["jobstatus"] != 0:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} still pending")


# --- parameters and signatures ---------------------------------------------------------


def test_awkward_values_arrive_byte_exact(client: CloudStack) -> None:
    echoed = client.echo(**AWKWARD)["echo"]
    assert echoed == {name.lower(): value for name, value in AWKWARD.items()}


def test_map_and_indexed_parameters_as_cs_sends_them(client: CloudStack) -> None:
    providers = [{"service": f"S{n}", "provider": "vxgate"} for n in range(12)]
    echoed = client.echoStructured(
        details=[{"cpuNumber": "2"}, {"rootDiskController": "scsi"}],
        tags={"key": "owner", "value": "ops team"}, serviceProviderList=providers,
        supportedServices=["Dhcp", "Dns", "SourceNat"])["echo"]
    assert echoed == {"details": {"cpuNumber": "2", "rootDiskController": "scsi"},
                      "tags": {"owner": "ops team"}, "providers": providers,
                      "services": ["Dhcp", "Dns", "SourceNat"]}


@pytest.mark.parametrize("version", [2, 3])
def test_a_wrong_secret_is_401(endpoint: str, version: int) -> None:
    client = _client(endpoint, version=version, secret=SECRET + "x")
    assert _refused(client.listCapabilities, 401) == {"listcapabilitiesresponse": {
        "uuidList": [], "errorcode": 401,
        "errortext": "unable to verify user credentials and/or request signature"}}


def test_v3_refuses_an_expired_request_and_one_without_expires(endpoint: str) -> None:
    client = _client(endpoint, version=3)
    _refused(lambda: client.listCapabilities(signatureVersion="3",
                                             expires="2000-01-01T00:00:00+0000"), 401)
    unexpiring = _client(endpoint, version=2)
    _refused(lambda: unexpiring.listCapabilities(signatureVersion="3"), 401)


# --- answers ---------------------------------------------------------------------------


def test_list_paging(client: CloudStack) -> None:
    assert client.listThings(fetch_list=True, pagesize=3) == THINGS
    assert client.listThings(page=3, pagesize=3) == {"count": 7, "thing": THINGS[6:]}
    assert client.listThings() == {"count": 7, "thing": THINGS}


def test_an_empty_list_is_an_empty_answer(client: CloudStack) -> None:
    assert client.listNothing() == {}
    assert client.listNothing(fetch_list=True) == []
    assert client.listThings(page=4, pagesize=3) == {}


def test_sync_success_answer(client: CloudStack) -> None:
    assert client.deleteThing(id="1") == {"success": "true"}


def test_async_jobs_succeed(client: CloudStack) -> None:
    job = client.createThing(name="web")
    assert list(job) == ["jobid"]
    thing = client.createThing(name="db", fetch_result=True)["thing"]
    assert thing["name"] == "db"
    assert client.expungeThing(id=thing["id"], fetch_result=True) == {"success": True}
    done = client.queryAsyncJobResult(jobid=job["jobid"])
    assert (done["jobstatus"], done["jobresultcode"]) == (1, 0)
    assert done["cmd"] == "CreateThingCmd" and done["jobresult"]["thing"]["name"] == "web"


def test_async_jobs_run_one_at_a_time_in_order(endpoint: str) -> None:
    client = _client(endpoint)
    job_log.clear()
    names = [f"n{number}" for number in range(8)]
    jobs = [client.createThing(name=name)["jobid"] for name in names]
    _finished(client, jobs[-1])
    assert job_log == names
    listed = {job["jobid"] for job in client.listAsyncJobs(fetch_list=True)}
    assert listed >= set(jobs)


def test_a_job_result_does_not_follow_the_handlers_state(endpoint: str) -> None:
    client = _client(endpoint)
    job = _finished(client, client.implementThing()["jobid"])
    live_thing["state"] = "Implemented"
    assert client.queryAsyncJobResult(jobid=job["jobid"]) == job
    assert job["jobresult"] == {"thing": {"state": "Allocated"}}


def test_a_running_job_is_pending(endpoint: str) -> None:
    client = _client(endpoint)
    gate.clear()
    job = client.waitThing()["jobid"]
    pending = client.queryAsyncJobResult(jobid=job)
    assert pending["jobstatus"] == 0 and "jobresult" not in pending
    gate.set()
    assert _finished(client, job)["jobresult"] == {"thing": {"opened": True}}


@pytest.mark.parametrize(("command", "code", "text"), [
    ("failThing", 536, "thing-1 is in use"),
    ("crashThing", 530, "Internal error executing command, please contact your "
                        "administrator (KeyError: 'vlan')"),
])
def test_async_failures_raise_with_the_error_text(client: CloudStack, command: str, code: int,
                                                  text: str) -> None:
    with pytest.raises(CloudStackApiException) as raised:
        getattr(client, command)(fetch_result=True)
    assert raised.value.error == {"errorcode": code, "errortext": text}
    job = client.queryAsyncJobResult(jobid=raised.value.response.json()[
        "queryasyncjobresultresponse"]["jobid"])
    assert (job["jobstatus"], job["jobresultcode"]) == (2, code)


# --- errors ----------------------------------------------------------------------------


def test_an_unknown_command_is_432(client: CloudStack) -> None:
    assert _refused(client.createNetwork, 432) == {"errorresponse": {
        "uuidList": [], "errorcode": 432, "cserrorcode": 9999,
        "errortext": "The given command does not exist or it is not available for user"}}


def test_a_missing_parameter_is_431(endpoint: str) -> None:
    client = _client(endpoint)
    assert _refused(client.echoName, 431) == {"echonameresponse": {
        "uuidList": [], "errorcode": 431, "cserrorcode": 4350,
        "errortext": "Unable to execute API command echoname due to missing parameter name"}}
    error = _refused(lambda: client.listThings(pagesize=3), 431)["listthingsresponse"]
    assert error["errortext"] == '"page" parameter is required when "pagesize" is specified'


@pytest.mark.parametrize(("command", "error"), [
    ("crash", "RuntimeError: boom"),
    ("notJson", "TypeError: Object of type object is not JSON serializable"),
])
def test_a_crashing_handler_is_a_one_line_530(client: CloudStack, command: str, error: str,
                                              caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="simulator.cloudstack"):
        answer = _refused(getattr(client, command), 530)[f"{command.lower()}response"]
    assert answer["errortext"] == ("Internal error executing command, please contact your "
                                   f"administrator ({error})")
    assert "Traceback" in caplog.text


def test_command_names_are_case_sensitive(endpoint: str) -> None:
    _refused(_client(endpoint).listcapabilities, 432)


def test_other_paths_are_404(endpoint: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(endpoint.replace("/client/api", "/client/apis"), timeout=5)
    assert raised.value.code == 404


# --- the command line ------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "key", "expected"), [
    (["listCapabilities"], "capability", {"cloudstackversion": "4.23.0.0"}),
    (["--post", "createThing", "name=from the CLI"], "thing", {"name": "from the CLI"}),
])
def test_the_cs_command_line(endpoint: str, tmp_path: Path, argv: list[str], key: str,
                             expected: dict[str, str]) -> None:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("CLOUDSTACK_")}
    env |= {"CLOUDSTACK_ENDPOINT": endpoint, "CLOUDSTACK_KEY": KEY,
            "CLOUDSTACK_SECRET": SECRET, "CLOUDSTACK_POLL_INTERVAL": "0.02",
            "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "cs", *argv], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[key].items() >= expected.items()
