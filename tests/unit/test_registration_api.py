"""CloudStackApi, the one class that talks to CloudStack, over the real cs client with a
fake HTTP session: parameters as CloudStack reads them, pages, async jobs, errors."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import pytest

from provider_service import cloudstack_registration as reg
from tests.unit.test_registration import SECRET, TOKEN, URL

# --- CloudStackApi over the real cs client, with a fake HTTP session ---------------------


class FakeResponse:
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status_code = status
        self.reason = "OK" if status == 200 else "Error"
        self.headers = {"Content-Type": "application/json"}
        self._body = body
        self.text = json.dumps(body)

    def json(self) -> dict[str, Any]:
        return self._body


class FakeSession:
    def __init__(self, *answers: FakeResponse | Exception) -> None:
        self.answers = list(answers)
        self.sent: list[Any] = []

    def send(self, prepared: Any, **_: Any) -> FakeResponse:
        self.sent.append(prepared)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def api_with(session: FakeSession) -> reg.CloudStackApi:
    return reg.CloudStackApi("http://cs:8080/client/api", "api-key-1", SECRET,
                             secrets=(TOKEN,), session=session)


def test_api_posts_indexed_details_and_unwraps_the_object() -> None:
    session = FakeSession(FakeResponse(200, {"registerextensionresponse": {
        "extension": {"id": "ext-1", "name": "vxgate"}}}))
    answer = api_with(session).call("registerExtension", {
        "extensionid": "ext-1", "resourcetype": "PhysicalNetwork", "resourceid": "pn-1",
        "details": [{"vxgate.url": URL}, {"vxgate.token": TOKEN}]})
    assert answer == {"id": "ext-1", "name": "vxgate"}
    (request,) = session.sent
    assert request.method == "POST"
    assert request.url == "http://cs:8080/client/api"  # nothing secret in the URL
    form = {k: v[0] for k, v in parse_qs(request.body).items()}
    assert form["command"] == "registerExtension"
    assert form["extensionid"] == "ext-1"
    assert form["details[0].vxgate.url"] == URL
    assert form["details[1].vxgate.token"] == TOKEN
    assert "signature" in form and SECRET not in request.body


def test_api_lists_all_pages() -> None:
    session = FakeSession(FakeResponse(200, {"listzonesresponse": {
        "count": 1, "zone": [{"id": "z-1", "name": "zone1"}]}}))
    assert api_with(session).list_all("listZones", {}) == [{"id": "z-1", "name": "zone1"}]
    empty = FakeSession(FakeResponse(200, {"listextensionsresponse": {}}))
    assert api_with(empty).list_all("listExtensions", {"name": "vxgate"}) == []


def test_api_error_text_is_one_line_without_secrets() -> None:
    session = FakeSession(FakeResponse(431, {"createextensionresponse": {
        "errorcode": 431, "errortext": f"Unable to use {TOKEN}"}}))
    with pytest.raises(reg.CloudStackError) as caught:
        api_with(session).call("createExtension", {"name": "vxgate"})
    assert str(caught.value) == "createExtension: Unable to use *** (error 431)"


def test_api_unreachable() -> None:
    import requests

    refused = requests.exceptions.ConnectionError(
        "HTTPConnectionPool(host='cs', port=8080): Max retries exceeded with url: "
        "/client/api (Caused by NewConnectionError('<conn>: Failed to establish a new "
        "connection: [Errno 111] Connection refused'))")
    with pytest.raises(reg.CloudStackError) as caught:
        api_with(FakeSession(refused)).list_all("listZones", {})
    assert str(caught.value) == ("cannot reach CloudStack at http://cs:8080/client/api: "
                                 "Connection refused")


def test_api_waits_for_async_jobs() -> None:
    session = FakeSession(
        FakeResponse(200, {"createvpcofferingresponse": {"id": "v-1", "jobid": "j-1"}}),
        FakeResponse(200, {"queryasyncjobresultresponse": {
            "jobstatus": 1, "jobresultcode": 0,
            "jobresult": {"vpcoffering": {"id": "v-1", "state": "Disabled"}}}}))
    answer = api_with(session).call("createVPCOffering", {"name": "vxgate-vpc"})
    assert answer == {"id": "v-1", "state": "Disabled"}
    assert parse_qs(session.sent[1].body)["jobid"] == ["j-1"]


def test_api_failed_job_is_one_line() -> None:
    session = FakeSession(
        FakeResponse(200, {"updatenetworkserviceproviderresponse": {"jobid": "j-2"}}),
        FakeResponse(200, {"queryasyncjobresultresponse": {
            "jobstatus": 2, "jobresultcode": 530,
            "jobresult": {"errorcode": 530, "errortext": "Provider is not ready"}}}))
    with pytest.raises(reg.CloudStackError) as caught:
        api_with(session).call("updateNetworkServiceProvider", {"id": "n", "state": "Enabled"})
    assert str(caught.value) == "updateNetworkServiceProvider: Provider is not ready (error 530)"
