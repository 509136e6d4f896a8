"""Answers not parsed twice: an identical body gives the value parsed last time, a changed one
keeps the objects that did not change; and the collector forgets the answers of what is gone."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from exporter.cce.client import CCEClient
from exporter.cce.memo import Memo, body_digest, reuse_unchanged
from exporter.cce.models import NodeSummary


@dataclass(frozen=True)
class Item:
    id: str | None
    value: int


def test_reuse_unchanged_keeps_old_objects_for_equal_items() -> None:
    old = [Item("a", 1), Item("b", 2), Item(None, 3)]
    new = [Item("b", 2), Item("a", 9), Item("c", 4), Item(None, 3)]
    out = reuse_unchanged(old, new)
    assert out == new
    assert out[0] is old[1]  # equal: the old object
    assert out[1] is new[1] and out[2] is new[2]  # changed or new: the new one
    assert reuse_unchanged([], new) == new


def test_memo_recalls_only_the_last_body_and_keeps_unchanged_objects() -> None:
    memo: Memo[list[Item]] = Memo()
    first = [Item("a", 1), Item("b", 2)]
    assert memo.recall(body_digest(b"one")) is None
    assert memo.keep(body_digest(b"one"), first) is first
    assert memo.recall(body_digest(b"one")) is first
    assert memo.recall(body_digest(b"two")) is None
    kept = memo.keep(body_digest(b"two"), [Item("a", 1), Item("b", 3)])
    assert kept[0] is first[0] and kept[1] == Item("b", 3)
    assert memo.recall(body_digest(b"two")) is kept
    single: Memo[Item] = Memo()
    one = single.keep(b"x", Item("j", 1))
    assert single.keep(b"y", Item("j", 1)) is one


NODES = {
    "kind": "List",
    "items": [
        {"metadata": {"uid": "n1", "name": "one"}, "status": {"phase": "Active"}},
        {"metadata": {"uid": "n2", "name": "two"}, "status": {"phase": "Installing"}},
    ],
}


@pytest.mark.asyncio
async def test_the_client_parses_an_identical_body_once() -> None:
    shorter = {**NODES, "items": [NODES["items"][0]]}
    bodies = [NODES, NODES, shorter, shorter]
    served: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        served.append(1)
        return httpx.Response(200, json=bodies[len(served) - 1])

    client = CCEClient(
        "https://cce.test.invalid",
        httpx.Auth(),
        "p",
        transport=httpx.MockTransport(handler),
    )
    memo: Memo[list[NodeSummary]] = Memo()
    async with client:
        first = await client.list_node_summaries("c1", memo=memo)
        second = await client.list_node_summaries("c1", memo=memo)
        third = await client.list_node_summaries("c1", memo=memo)
        fresh = await client.list_node_summaries("c1")  # no memo: parsed as always
    assert len(served) == 4
    assert [n.id for n in first] == ["n1", "n2"]
    assert second is first  # not parsed again
    assert [n.id for n in third] == ["n1"] and third[0] is first[0]
    assert fresh == third and fresh[0] is not first[0]
