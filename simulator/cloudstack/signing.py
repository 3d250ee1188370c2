"""The request signature, checked as CloudStack's ApiServer.verifyRequest checks it.

The signed text: every parameter but `signature`, by name as sent, sorted as Java's
Collections.sort sorts strings (by UTF-16 code unit, so case-sensitively: "zoneId" before
"zone_name"; the cs client's sorted() agrees), each as `name=value` with the value encoded
as java.net.URLEncoder does with "+" then replaced by "%20", joined by "&", and the whole
lower-cased. Its HMAC-SHA1 under the user's secret key, base64, is the signature.
signatureVersion=3 also needs `expires`, a "yyyy-MM-dd'T'HH:mm:ssZ" time in the future.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from urllib.parse import quote

logger = logging.getLogger(__name__)
EXPIRES_FORMAT = "%Y-%m-%dT%H:%M:%S%z"
Encoder = Callable[[str], str]


def java_url_encode(value: str) -> str:
    """URLEncoder.encode(value, "UTF-8").replaceAll("\\+", "%20"): it leaves only letters,
    digits and ".-*_" alone; quote() would also leave "~"."""
    return quote(value, safe="*").replace("~", "%7E")


def cs_client_encode(value: str) -> str:
    """The cs client's cs_encode: as java_url_encode, but "~" stays."""
    return quote(value, safe="*")


def _java_string_order(name: str) -> bytes:
    # Java compares UTF-16 code units; Python compares code points. They differ only
    # above the BMP, which parameter names never reach, but the key costs nothing.
    return name.encode("utf-16-be")


def signed_text(params: Mapping[str, str], encode: Encoder = java_url_encode) -> str:
    pairs = (f"{name}={encode(params[name])}"
             for name in sorted(params, key=_java_string_order) if name.lower() != "signature")
    return "&".join(pairs).lower()


def signature(params: Mapping[str, str], secret: str,
              encode: Encoder = java_url_encode) -> str:
    digest = hmac.new(secret.encode(), signed_text(params, encode).encode(), hashlib.sha1)
    return base64.b64encode(digest.digest()).decode()


def _get(params: Mapping[str, str], name: str) -> str | None:
    return next((value for key, value in params.items() if key.lower() == name), None)


def _signature_matches(params: Mapping[str, str], secret: str, sent: str) -> bool:
    if hmac.compare_digest(signature(params, secret).encode(), sent.encode()):
        return True
    # The cs client leaves "~" unencoded, so CloudStack refuses its requests with a "~" in
    # a value. The stand-in accepts them, so that the client works, and says so in its log.
    if any("~" in value for value in params.values()) and hmac.compare_digest(
            signature(params, secret, cs_client_encode).encode(), sent.encode()):
        logger.warning("accepted a signature over an unencoded '~' (CloudStack would not)")
        return True
    return False


def _expiry_refusal(expires: str | None, now: datetime) -> str:
    if expires is None:
        return "signatureVersion 3 without expires"
    try:
        deadline = datetime.strptime(expires, EXPIRES_FORMAT)
    except ValueError:
        return f"expires {expires!r} is not yyyy-MM-dd'T'HH:mm:ssZ"
    if deadline < now:
        return f"the request expired at {expires}"
    return ""


def refusal(params: Mapping[str, str], secrets: Mapping[str, str], now: datetime) -> str:
    """Why the request is refused, or "" when it verifies. `params` holds the first value
    of each name as sent; `secrets` maps api keys to secret keys; `now` is aware."""
    api_key, sent = _get(params, "apikey"), _get(params, "signature")
    if api_key is None or sent is None:
        return "no apiKey or no signature"
    secret = secrets.get(api_key)
    if secret is None:
        return "unknown apiKey"
    if not _signature_matches(params, secret, sent):
        return "wrong signature"
    if _get(params, "signatureversion") == "3":
        return _expiry_refusal(_get(params, "expires"), now)
    return ""
