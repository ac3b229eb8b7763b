"""The exact median/p90 across sorted day runs, and the stored month views, without a store:
the search across runs (used above SORT_BELOW values, i.e. a busy tenant's year) must give what
sorting the union gives, and totals written before the views were compressed must still read."""

import math
import random
import statistics
import zlib
from array import array

import bson
import pytest

from backend.reports import aggregates
from backend.reports import service as reports
from backend.reports.schemas import Quantiles


def _runs(rng: random.Random) -> list["array[int]"]:
    # Ties (a few small values) and spread values, empty runs included.
    def value() -> int:
        return rng.randrange(4) if rng.random() < 0.3 else rng.randrange(10**7)

    return [array("q", sorted(value() for _ in range(rng.randrange(0, 25)))) for _ in range(rng.randrange(1, 15))]


@pytest.mark.parametrize("search", [False, True], ids=["sorted-union", "search-across-runs"])
def test_quantiles_equal_those_of_the_sorted_union(monkeypatch: pytest.MonkeyPatch, search: bool) -> None:
    if search:
        monkeypatch.setattr(reports, "SORT_BELOW", 0)
    rng = random.Random(18)
    checked = 0
    for _ in range(1500):
        runs = _runs(rng)
        union = sorted(v for r in runs for v in r)
        if not union:
            assert reports.quantiles(runs) == Quantiles()
            continue
        q = reports.quantiles(runs)
        assert q.median == statistics.median(union) / 1000
        assert q.p90 == union[max(0, math.ceil(0.9 * len(union)) - 1)] / 1000
        checked += 1
    assert checked > 1000


def test_a_month_view_reads_back_compressed_and_as_written_before() -> None:
    state: dict[str, object] = {}
    parts = [{"d": "05", "h": 9, "dim": ["d1", "a1", "c1"], "o": 1, "f": 1, "rs": [7000, 1000]}]
    aggregates.fold_month(state, parts, view="all")
    stored = aggregates.encode(state)
    assert "blob" not in stored  # compressed: fewer bytes through the store
    assert aggregates.decode(stored) == aggregates.clean(state)
    before = {"blob": bson.encode(aggregates.clean(state))}  # totals written before the compression
    assert aggregates.decode(before) == aggregates.clean(state)
    one_blob = {"z": zlib.compress(bson.encode(aggregates.clean(state)))}  # before the blob per dims
    assert aggregates.decode(one_blob) == aggregates.clean(state)
    for view in aggregates.PROJECTIONS:  # each view's own encoding (one blob, or one per dims)
        assert aggregates.decode(aggregates.encoder(view)(state)) == aggregates.clean(state)
    assert list(aggregates.unpack(aggregates.decode(before)["cells"]["05|0"]["rs"])) == [1000, 7000]


def test_a_month_view_decodes_only_the_dims_a_filter_wants() -> None:
    """A view stores one blob per interned dims: a filtered read decodes the cells of its dims
    alone, keeps every dims (a tail folded onto it interns as the totals did), and the cells it
    decodes are the full decode's."""
    state: dict[str, object] = {}
    for i, agent in enumerate(("a1", "a2", "a1", None)):
        part = {"d": f"0{i + 1}", "h": 9, "dim": ["d1", agent, "c1"], "o": 1, "fr": [1000 * i]}
        aggregates.fold_month(state, [part], view="agent")
    stored = aggregates.encode(state)
    full = aggregates.decode(stored)
    assert full == aggregates.clean(state)
    part_ = aggregates.decode(stored, where=lambda dims: dims[1] == "a1")
    assert part_["dims"] == full["dims"]
    assert part_["cells"] == {k: v for k, v in full["cells"].items() if k.endswith("|0")}
    assert aggregates.decode(stored, where=lambda dims: dims[1] == "nobody") == {"dims": full["dims"]}
    aggregates.fold_month(part_, [{"d": "09", "h": 1, "dim": ["d1", "a2", "c1"], "o": 1}], view="agent")
    assert "09|1" in part_["cells"]  # a2 keeps its index
    assert aggregates.decode(aggregates.encode({})) == {}
