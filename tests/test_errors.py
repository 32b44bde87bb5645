"""errors.quote: a short repr of any input, never built in full."""

from __future__ import annotations

from ohemcli.errors import QUOTE_LIMIT, quote


def test_short_values_are_their_repr() -> None:
    for value in ("abc", 5, -1.5, None, [1, 2], ("a",), {"k": 1}):
        assert quote(value) == repr(value)


def test_a_huge_string_is_cut_to_the_limit() -> None:
    text = quote("x" * 5_000_000)
    assert len(text) == QUOTE_LIMIT and text.startswith("'xxx") and text.endswith("…")


def test_a_self_similar_structure_is_quoted_without_its_expansion() -> None:
    # 9**30 leaves if expanded: a full repr could never finish; reprlib shows a few per level.
    node: list = ["x"] * 9
    for _ in range(30):
        node = [node] * 9
    text = quote(node)
    assert len(text) <= QUOTE_LIMIT and text.startswith("[[[")
