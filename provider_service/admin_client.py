"""What the admin commands (`vxgate status`, `vxgate cloudstack register`) need to call the
service: a TLS context for https URLs, and the extension-token call.

TLS settings come from the environment, the same names the agent's options and the
CloudStack entry-point use: VXGATE_CA_FILE (the CA that signed the service's
certificate: `vxgate ca init`), and VXGATE_CLIENT_CERT / VXGATE_CLIENT_KEY (a certificate
to present when the service requires client certificates).
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from urllib.parse import quote

TIMEOUT_S = 15.0


class AdminCallError(Exception):
    """The call failed; one line that names no token."""


def tls_context(environ: Mapping[str, str]) -> ssl.SSLContext:
    """Verifies the service against VXGATE_CA_FILE (else the system CAs), and presents
    VXGATE_CLIENT_CERT/KEY if set. AdminCallError if a file cannot be loaded."""
    ca_file = environ.get("VXGATE_CA_FILE") or None
    cert, key = environ.get("VXGATE_CLIENT_CERT", ""), environ.get("VXGATE_CLIENT_KEY", "")
    try:
        context = ssl.create_default_context(cafile=ca_file)
        if cert:
            context.load_cert_chain(cert, key or None)
    except (OSError, ssl.SSLError) as error:
        what = "VXGATE_CA_FILE" if ca_file and not cert else "VXGATE_CA_FILE/VXGATE_CLIENT_CERT"
        raise AdminCallError(f"cannot load {what}: {getattr(error, 'strerror', None) or error}") \
            from None
    return context


def issue_extension_token(service_url: str, admin_token: str, name: str, keep: str,
                          environ: Mapping[str, str]) -> str:
    """POST /v1/extension-tokens/<name> {"keep": keep}: `keep` if still valid, else new."""
    url = f"{service_url.rstrip('/')}/v1/extension-tokens/{quote(name, safe='')}"
    body = json.dumps({"keep": keep} if keep else {}).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"})
    context = tls_context(environ) if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=context) as answer:
            token = json.loads(answer.read())["token"]
    except urllib.error.HTTPError as error:
        raise AdminCallError(f"the service refused an extension token for {name}: "
                             f"HTTP {error.code}: {_error_text(error)}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise AdminCallError(f"cannot reach the service at {service_url}: {reason}") from None
    except (ValueError, KeyError, TypeError):
        raise AdminCallError(f"{service_url} did not answer like the vxgate service") from None
    if not isinstance(token, str) or not token:
        raise AdminCallError(f"{service_url} did not answer like the vxgate service")
    return token


def _error_text(error: urllib.error.HTTPError) -> str:
    try:
        return " ".join(str(json.loads(error.read())["error"]).split())[:200]
    except Exception:  # not our JSON error: a proxy's page, say
        return error.reason or "no reason given"
