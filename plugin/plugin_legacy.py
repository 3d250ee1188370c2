"""The pre-merge CLI-flag invocation (protocol.md §9), turned into the payload-file envelope.

Only builds before CloudStack 4.23's merge use this form, so it lives apart from the entry
point and is imported only when needed. Flags become the payload keys of the current form
(`--network-id` → `network_id`); the temp files and base64 layers of the old form are
unpacked, so the service sees one shape for both.
"""

from __future__ import annotations

import base64
import json

ENVELOPE_FLAGS = {
    "--physical-network-extension-details": "physical-network-extension-details",
    "--network-extension-details": "network-extension-details",
}
# Flags whose value is a temp file holding base64(JSON) → payload key.
FILE_FLAGS = {
    "--fw-rules-file": "fw_rules",
    "--acl-rules-file": "acl_rules",
    "--vm-data-file": "vm_data",
    "--restore-data-file": "restore_data",
}
JSON_FLAGS = {"--lb-rules": "lb_rules", "--options": "options", "--action-params": "action-params"}
BASE64_TEXT_FLAGS = {"--userdata": "userdata", "--sshkey": "sshkey"}


class LegacyError(ValueError):
    pass


def legacy_envelope(command: str, args: list[str]) -> dict[str, object]:
    """Build {'physical-network-extension-details', 'network-extension-details', 'payload'}.

    Raises LegacyError (a ValueError) with one line when the arguments are malformed.
    """
    if len(args) % 2:
        raise LegacyError(f"flag {args[-1]} has no value")
    envelope: dict[str, object] = {key: {} for key in ENVELOPE_FLAGS.values()}
    payload: dict[str, object] = {}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if not flag.startswith("--") or len(flag) < 3:
            raise LegacyError(f"expected a --flag, got {flag[:30]!r}")
        if flag in ENVELOPE_FLAGS:
            envelope[ENVELOPE_FLAGS[flag]] = _json(value, flag)
        elif flag in FILE_FLAGS:
            payload[FILE_FLAGS[flag]] = _unpack_contents(_json(_file_base64(value, flag), flag))
        elif flag in JSON_FLAGS:
            payload[JSON_FLAGS[flag]] = _json(value, flag)
        elif flag in BASE64_TEXT_FLAGS:
            payload[BASE64_TEXT_FLAGS[flag]] = _base64_text(value, flag)
        else:
            payload[flag[2:].replace("-", "_")] = value
    if command == "custom-action":
        return {**envelope, **payload}  # the current form sends custom-action flat too
    envelope["payload"] = payload
    return envelope


def _json(text: str, flag: str) -> object:
    try:
        return json.loads(text)
    except ValueError as error:
        raise LegacyError(f"{flag} is not JSON: {error}") from None
    except RecursionError:
        raise LegacyError(f"{flag} is not JSON: nested too deeply") from None


def _file_base64(path: str, flag: str) -> str:
    try:
        with open(path, "rb") as handle:
            return base64.b64decode(handle.read(), validate=False).decode("utf-8")
    except OSError as error:
        raise LegacyError(f"{flag}: cannot read {path}: {error.strerror}") from None
    except (ValueError, UnicodeDecodeError):
        raise LegacyError(f"{flag}: not base64-encoded UTF-8") from None


def _base64_text(value: str, flag: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise LegacyError(f"{flag}: not base64-encoded UTF-8") from None


def _unpack_contents(data: object) -> object:
    """The old vm-data and restore files base64 every `content` value; the new form not."""
    if isinstance(data, list):
        return [_unpack_contents(item) for item in data]
    if isinstance(data, dict):
        return {
            key: _base64_text(value, "content") if key == "content" and isinstance(value, str)
            else _unpack_contents(value)
            for key, value in data.items()
        }
    return data
