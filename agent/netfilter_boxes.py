"""Union of boxes as disjoint boxes: what a concatenated interval set can hold.

Firewall rules become elements of nft sets whose keys concatenate intervals (address
range . protocol . address range . port range). The kernel's set for those (pipapo)
refuses an element whose start or end point already falls inside another element
(`File exists`), yet two CloudStack rules may well overlap (22 from anywhere, 20-25
from 10/8). Allow-lists only need the union, so the renderer turns each set's boxes
into disjoint boxes covering exactly the same points. Pure integer arithmetic; the
renderer formats the bounds.
"""

from __future__ import annotations

from collections.abc import Iterable

Interval = tuple[int, int]  # inclusive bounds
Box = tuple[Interval, ...]  # one interval per dimension


def _intersects(a: Box, b: Box) -> bool:
    return all(lo1 <= hi2 and lo2 <= hi1 for (lo1, hi1), (lo2, hi2) in zip(a, b, strict=True))


def subtract(box: Box, cut: Box) -> list[Box]:
    """`box` minus `cut` as at most 2 * dims disjoint boxes."""
    if not _intersects(box, cut):
        return [box]
    pieces: list[Box] = []
    rest = list(box)
    for dim, ((lo, hi), (cut_lo, cut_hi)) in enumerate(zip(box, cut, strict=True)):
        # Peel off what lies below and above the cut in this dimension; the remainder,
        # restricted to the cut here, goes on to the next dimension.
        if lo < cut_lo:
            pieces.append((*rest[:dim], (lo, cut_lo - 1), *rest[dim + 1:]))
        if hi > cut_hi:
            pieces.append((*rest[:dim], (cut_hi + 1, hi), *rest[dim + 1:]))
        rest[dim] = (max(lo, cut_lo), min(hi, cut_hi))
    return pieces


def disjoint(boxes: Iterable[Box]) -> list[Box]:
    """Disjoint boxes covering the union of `boxes`, sorted; deterministic for a given
    set of inputs (they are sorted first, so their order does not matter)."""
    result: list[Box] = []
    for box in sorted(set(boxes)):
        pieces = [box]
        for kept in result:
            pieces = [part for piece in pieces for part in subtract(piece, kept)]
            if not pieces:
                break
        result.extend(pieces)
    return sorted(result)
