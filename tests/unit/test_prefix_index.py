"""The prefix index, table-driven: longest held prefix, restriction to some holders, updates."""

from __future__ import annotations

import pytest

from agentport.cache.prefix_index import BLOCK, PrefixIndex, block_keys

A = list(range(1000, 1000 + 3 * BLOCK + 10))  # three full blocks and a partial one
B = A[: 2 * BLOCK] + [7] * (BLOCK + 5)  # shares two blocks with A


def index_of(**holders: list[int]) -> PrefixIndex:
    index = PrefixIndex()
    for name, tokens in holders.items():
        index.put(name, tokens)
    return index


@pytest.mark.parametrize(
    ("holders", "prompt", "expected"),
    [
        ({"a": A}, A, ("a", len(A))),
        ({"a": A}, A + [1, 2, 3], ("a", len(A))),
        ({"a": A}, A[:10], ("a", 10)),
        ({"a": A}, A[: BLOCK + 3] + [0], ("a", BLOCK + 3)),
        ({"a": A, "b": B}, B + [9], ("b", len(B))),
        ({"a": A, "b": B}, A[: 2 * BLOCK] + [5], ("a", 2 * BLOCK)),  # a tie: either holder
        ({"a": A}, [5, 6, 7], ("a", 0)),
        ({}, A, None),
    ],
)
def test_longest_prefix(holders, prompt, expected):
    match = index_of(**holders).longest(prompt)
    if expected is None:
        assert match is None
        return
    name, length = expected
    assert match.length == length
    if length == 2 * BLOCK and len(holders) == 2:
        assert match.holder in ("a", "b")
    else:
        assert match.holder == name


def test_restricted_to_some_holders():
    index = index_of(a=A, b=B)
    assert index.longest(A, among={"b"}).holder == "b"
    assert index.longest(A, among={"b"}).length == 2 * BLOCK
    assert index.longest(A, among={"gone"}) is None


def test_put_replaces_and_remove_forgets():
    index = index_of(a=A)
    index.put("a", B)
    assert index.longest(A).length == 2 * BLOCK
    index.remove("a")
    assert index.longest(A) is None and len(index) == 0
    index.remove("a")  # twice is harmless


def test_block_keys_chain_over_the_whole_prefix():
    other = [0] + A[1:]
    assert block_keys(A)[1] != block_keys(other)[1]
    assert len(block_keys(A)) == 3 and block_keys(A[: BLOCK - 1]) == []
