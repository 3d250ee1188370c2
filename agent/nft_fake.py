"""FakeNft: an in-memory stand-in for agent.nft that understands the text we render.

It keeps, per namespace, our tables with their sets' elements and their chains, and
applies a file as one transaction (all or nothing), refusing what the kernel refuses:
deleting a missing table, element or chain, re-adding a map key with another value,
touching a set that does not exist. `fail_when` makes any text containing one of its
strings fail, to play a kernel that rejects one object. It is not an nft parser: it
reads the statements netfilter_render writes and nothing else.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Final

from agent.nft import NftError

_DECL_RE: Final = re.compile(r"^\s*(set|map) (\w+) \{")
_CHAIN_RE: Final = re.compile(r"^\s*chain (\w+) \{")
_ELEMENTS_RE: Final = re.compile(r"^(add|delete) element (\w+ \w+) (\w+) \{(.*)\}$", re.S)


@dataclass
class FakeTable:
    elements: dict[str, dict[str, str | None]] = field(default_factory=dict)
    maps: set[str] = field(default_factory=set)
    chains: dict[str, list[str]] = field(default_factory=dict)


Ruleset = dict[str, FakeTable]


@dataclass
class FakeNft:
    namespaces: dict[str | None, Ruleset] = field(default_factory=dict)
    calls: list[tuple[str | None, str, bool]] = field(default_factory=list)
    fail_when: list[str] = field(default_factory=list)

    def apply(self, netns: str | None, text: str, *, check: bool = False) -> None:
        self.calls.append((netns, text, check))
        for marker in self.fail_when:
            if marker in text:
                raise NftError(f"nft (fake): Error: Could not process rule: {marker}")
        work = copy.deepcopy(self.namespaces.get(netns, {}))
        for statement in statements(text):
            _execute(work, statement)
        if not check:
            self.namespaces[netns] = work

    def list_ruleset(self, netns: str | None) -> str:
        lines: list[str] = []
        for name, table in sorted(self.namespaces.get(netns, {}).items()):
            lines.append(f"table {name} {{")
            for set_name, elements in sorted(table.elements.items()):
                texts = [k if v is None else f"{k} : {v}" for k, v in sorted(elements.items())]
                lines.append(f"\tset {set_name} {{ {', '.join(texts)} }}")
            for chain, rules in sorted(table.chains.items()):
                lines.append(f"\tchain {chain} {{ {'; '.join(rules)} }}")
            lines.append("}")
        return "\n".join(lines) + "\n" if lines else ""

    def elements(self, netns: str | None, table: str, set_name: str) -> dict[str, str | None]:
        return dict(self.namespaces.get(netns, {})[table].elements[set_name])


def statements(text: str) -> list[str]:
    """Top-level statements: a line, or lines up to the brace that closes the first."""
    result: list[str] = []
    current: list[str] = []
    depth = 0
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current.append(line)
        depth += line.count("{") - line.count("}")
        if depth == 0:
            result.append("\n".join(current))
            current = []
    if current:
        raise NftError("nft (fake): Error: syntax error, unbalanced braces")
    return result


def _fail(message: str) -> NftError:
    return NftError(f"nft (fake): Error: {message}")


def _table(work: Ruleset, name: str) -> FakeTable:
    if name not in work:
        raise _fail(f"No such file or directory: table {name}")
    return work[name]


def _execute(work: Ruleset, statement: str) -> None:
    head = statement.split("\n", 1)[0]
    words = head.split()
    if words[0] == "table":
        _table_statement(work, statement, " ".join(words[1:3]))
    elif words[:2] == ["delete", "table"]:
        _table(work, " ".join(words[2:4]))
        del work[" ".join(words[2:4])]
    elif words[1:2] == ["element"]:
        _element_statement(work, statement)
    elif words[1:2] == ["chain"] or words[:2] == ["add", "rule"]:
        _chain_statement(work, words, head)
    else:
        raise _fail(f"syntax error: {head[:60]}")


def _table_statement(work: Ruleset, statement: str, name: str) -> None:
    table = work.setdefault(name, FakeTable())
    chain: str | None = None
    for line in statement.splitlines()[1:]:
        decl, chain_match = _DECL_RE.match(line), _CHAIN_RE.match(line)
        if decl:
            table.elements.setdefault(decl.group(2), {})
            if decl.group(1) == "map":
                table.maps.add(decl.group(2))
        elif chain_match:
            chain = chain_match.group(1)
            table.chains[chain] = []
        elif line.strip() == "}":
            chain = None
        elif chain is not None and line.strip() and not line.strip().startswith(
                ("type ", "#")):
            table.chains[chain].append(line.strip())


def _element_statement(work: Ruleset, statement: str) -> None:
    match = _ELEMENTS_RE.match(statement)
    if match is None:
        raise _fail(f"syntax error: {statement[:60]}")
    verb, table_name, set_name, body = match.groups()
    table = _table(work, table_name)
    if set_name not in table.elements:
        raise _fail(f"No such file or directory: set {set_name}")
    elements = table.elements[set_name]
    for item in (part.strip() for part in body.split(",")):
        key, _, value = (part.strip() for part in item.partition(" : "))
        if verb == "delete":
            if key not in elements:
                raise _fail(f"Could not process rule: No such file or directory: {key}")
            del elements[key]
            continue
        stored = value if set_name in table.maps else None
        if key in elements and elements[key] != stored:
            raise _fail(f"Could not process rule: Device or resource busy: {key}")
        elements[key] = stored


def _chain_statement(work: Ruleset, words: list[str], head: str) -> None:
    table = _table(work, " ".join(words[2:4]))
    chain = words[4]
    verb = words[0] if words[1] == "chain" else "rule"
    if verb == "add":
        table.chains.setdefault(chain, [])
        return
    if chain not in table.chains:
        raise _fail(f"No such file or directory: chain {chain}")
    if verb == "flush":
        table.chains[chain] = []
    elif verb == "delete":
        del table.chains[chain]
    else:
        table.chains[chain].append(head.split(None, 5)[5])
