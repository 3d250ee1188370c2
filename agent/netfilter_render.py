"""Routing-domain state -> nft text (pure): the whole ruleset, or the delta between two.

The whole ruleset is one `nft -f` transaction per domain: for each table,
`table X {}` (so that the delete cannot fail), `delete table X`, the table with its
skeleton and tenant chains, then its elements. Into a namespace known to be new the
first two are left out: deleting a table costs the kernel more than building one
(10 ms for the isolated golden without them, 23 ms with, most of a full rebuild's nft
time). nft applies a file as one netlink batch,
so the kernel switches from the old ruleset to the new one at once: no packet sees a
half-built table. Connections survive it: NAT bindings live in conntrack, not in the
table.

The delta touches elements and tenant chains only: adding a port forward is one
`add element`. It is valid only against the exact state it was computed from; the
applier falls back to the whole ruleset when the kernel disagrees. Output is sorted, so
equal states give equal text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from agent.netfilter_compile import FW, LB, NAT, TableData, compile_domain
from agent.netfilter_state import RoutingDomain

HEADER: Final = "# vxgate netfilter ruleset (agent.netfilter_render): generated, do not edit\n"
TABLES: Final = (FW, NAT, LB)
# Elements per `add element` statement: bounds nft's memory per statement; one file is
# still one transaction.
CHUNK: Final = 2000


def render_full(domain: RoutingDomain) -> str:
    return render_tables(compile_domain(domain))


def render_delta(old: RoutingDomain, new: RoutingDomain) -> str:
    """Element and chain changes from `old` to `new`; "" when nothing changed."""
    return delta_tables(compile_domain(old), compile_domain(new))


def render_teardown() -> str:
    """Removes our tables (and nothing else), whether they exist or not."""
    lines = [HEADER.rstrip("\n")]
    for name in TABLES:
        lines += [f"table {name} {{}}", f"delete table {name}"]
    return "\n".join(lines) + "\n"


def render_tables(tables: Iterable[TableData], *, fresh: bool = False) -> str:
    """The whole ruleset; `fresh`: for a namespace with none of our tables yet."""
    lines = [HEADER.rstrip("\n")]
    for table in tables:
        if not fresh:
            lines += [f"table {table.name} {{}}", f"delete table {table.name}"]
        lines.append(f"table {table.name} {{")
        chains = "".join(_chain_block(name, rules) for name, rules in sorted(table.chains.items()))
        lines.append(table.skeleton.replace("@CHAINS@\n", chains).rstrip("\n"))
        lines.append("}")
        for set_name, elements in sorted(table.elements.items()):
            lines += _element_lines("add", table.name, set_name, elements)
    return "\n".join(lines) + "\n"


def delta_tables(old: Iterable[TableData], new: Iterable[TableData]) -> str:
    old_by_name = {t.name: t for t in old}
    lines: list[str] = []
    for table in new:
        before = old_by_name.get(table.name)
        if before is None or before.skeleton != table.skeleton:
            raise ValueError(f"no delta for {table.name}: its skeleton changed")
        lines += _table_delta(before, table)
    return "\n".join(lines) + "\n" if lines else ""


def _table_delta(old: TableData, new: TableData) -> list[str]:
    # Order matters inside the transaction: chains exist before elements jump to them,
    # a changed map key is deleted before it is added again, and a chain is deleted only
    # after the elements that jump to it.
    lines: list[str] = []
    for name, rules in sorted(new.chains.items()):
        if name not in old.chains:
            lines.append(f"add chain {new.name} {name}")
        elif old.chains[name] != rules:
            lines.append(f"flush chain {new.name} {name}")
        else:
            continue
        lines += [f"add rule {new.name} {name} {rule}" for rule in rules]
    adds: list[str] = []
    for set_name in sorted(set(old.elements) | set(new.elements)):
        before, after = old.elements.get(set_name, {}), new.elements.get(set_name, {})
        gone = {k: v for k, v in before.items() if k not in after or after[k] != v}
        added = {k: v for k, v in after.items() if k not in before or before[k] != v}
        lines += _element_lines("delete", new.name, set_name, dict.fromkeys(gone))
        adds += _element_lines("add", new.name, set_name, added)
    lines += adds
    lines += [f"delete chain {new.name} {name}" for name in sorted(old.chains)
              if name not in new.chains]
    return lines


def _chain_block(name: str, rules: Iterable[str]) -> str:
    body = "".join(f"\t\t{rule}\n" for rule in rules)
    return f"\tchain {name} {{\n{body}\t}}\n\n"


def _element_lines(verb: str, table: str, set_name: str,
                   elements: Mapping[str, str | None]) -> list[str]:
    texts = [key if value is None else f"{key} : {value}"
             for key, value in sorted(elements.items())]
    lines: list[str] = []
    for start in range(0, len(texts), CHUNK):
        body = ",\n\t".join(texts[start:start + CHUNK])
        lines.append(f"{verb} element {table} {set_name} {{\n\t{body}\n}}")
    return lines
