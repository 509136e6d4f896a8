"""The models' fast paths (pydantic-core first, Python only for odd values) keep every tolerance."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.cce.errors import ResponseParseError
from exporter.cce.models import (
    NodeList,
    NodeSpec,
    NodeSummary,
    parse_node_summaries,
    parse_response,
    parse_timestamp,
)
from exporter.cce.models.fields import _utc_timestamp
from exporter.simulator.world import World

REFERENCE_EXAMPLES = Path(__file__).resolve().parent / "fixtures" / "cce-api" / "examples"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2018-08-02 03:48:58.968214406 +0000 UTC", datetime(2018, 8, 2, 3, 48, 58, 968214, UTC)),
        ("2018-08-02T03:48:58Z", datetime(2018, 8, 2, 3, 48, 58, tzinfo=UTC)),
        ("2018-08-02T03:48:58.5+00:00", datetime(2018, 8, 2, 3, 48, 58, 500000, UTC)),
        (
            "2018-08-02T03:48:58+08:00",
            datetime(2018, 8, 2, 3, 48, 58, tzinfo=timezone(timedelta(hours=8))),
        ),
        (" 2018-08-02T03:48:58Z ", datetime(2018, 8, 2, 3, 48, 58, tzinfo=UTC)),
        ("2018-02-30T03:48:58Z", None),
        ("2018-08-02T03:48:60Z", None),
        ("2018-08-02T03:48:58.1234567890Z", None),
        ("٢٠١٨-08-02T03:48:58Z", None),
        ("", None),
    ],
)
def test_timestamps_fast_and_general_paths_agree(text: str, expected: datetime | None) -> None:
    assert parse_timestamp(text) == expected
    fast = _utc_timestamp(text)
    assert fast is None or fast == expected
    # Twice: the cache must give the same answer.
    assert parse_timestamp(text) == expected


def test_odd_values_still_take_the_lenient_path() -> None:
    body = (
        b'{"items": [{"metadata": {"name": 12, "uid": true, "annotations": {"a": 1, "b": null}},'
        b' "spec": {"rootVolume": 7, "dataVolumes": [1, {"SIZE": "40Gi"}, "x"],'
        b' "billingMode": "2"}, "status": []}, 5, {"kind": {"x": 1}}]}'
    )
    nodes = parse_response(NodeList, body).items
    assert len(nodes) == 2  # the stray number is dropped, not an empty node
    node = nodes[0]
    assert node.metadata.name == "12" and node.metadata.uid == "true"
    assert node.metadata.annotations == {"a": "1"}
    assert node.spec.root_volume.size is None
    assert [v.size for v in node.spec.data_volumes] == [40]  # "x" and 1 dropped; key case-free
    assert node.spec.billing_mode == 2
    assert node.status.phase is None
    assert nodes[1].kind is None


def test_case_insensitive_keys_beside_keys_no_field_reads() -> None:
    for _ in range(3):
        spec = NodeSpec.model_validate({"Flavor": "s6", "login": {}, "ROOTVOLUME": {"size": 1}})
        assert spec.flavor == "s6" and spec.root_volume.size == 1
        exact = NodeSpec.model_validate({"flavor": "a", "FLAVOR": "b"})
        assert exact.flavor == "a"  # the exact spelling wins


# --- node lists read into summaries: the values the Node models give ----------------------------

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
_TIMES = st.one_of(
    _SCALARS,
    st.sampled_from(
        [
            "2018-08-02 03:48:58.968214406 +0000 UTC",
            "2018-08-02T03:48:58Z",
            "2018-08-02T03:48:58+08:00",
            "2018-02-30T03:48:58Z",
            " 2018-08-02T03:48:58Z ",
        ]
    ),
    st.floats(min_value=0, max_value=4e9),
)
_JSON = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=2), max_leaves=3)


def _spellings(key: str) -> st.SearchStrategy[str]:
    return st.sampled_from([key, key.lower(), key.upper(), key.swapcase()])


def _casefolded_object(fields: dict[str, str], values: st.SearchStrategy[object]) -> Any:
    """Objects with ``fields`` under any casing (or their Python names), sometimes twice."""
    keys = st.one_of(
        *(_spellings(alias) for alias in fields),
        st.sampled_from([name for name in fields.values()]),
        st.sampled_from(["rootVolume", "reason", "extra"]),
    )
    return st.dictionaries(keys, values, max_size=6)


_NODE_ITEMS = st.fixed_dictionaries(
    {},
    optional={
        "metadata": st.one_of(
            _SCALARS,
            st.fixed_dictionaries(
                {},
                optional={
                    "uid": _SCALARS,
                    "name": _SCALARS,
                    "creationTimestamp": _TIMES,
                    "creation_timestamp": _TIMES,
                    "annotations": st.one_of(
                        _SCALARS,
                        st.dictionaries(
                            st.sampled_from(["kubernetes.io/node-pool.id", "other"]),
                            _JSON,
                            max_size=2,
                        ),
                    ),
                },
            ),
        ),
        "spec": st.one_of(
            _SCALARS,
            _casefolded_object({"flavor": "flavor", "az": "az", "os": "os"}, _JSON),
        ),
        "status": st.one_of(
            _SCALARS,
            _casefolded_object(
                {
                    "phase": "phase",
                    "jobID": "job_id",
                    "privateIP": "private_ip",
                    "lastProbeTime": "last_probe_time",
                    "configurationUpToDate": "configuration_up_to_date",
                },
                st.one_of(_JSON, _TIMES),
            ),
        ),
    },
)


@settings(max_examples=400, deadline=None)
@given(items=st.one_of(st.lists(st.one_of(_NODE_ITEMS, _SCALARS), max_size=4), _NODE_ITEMS))
def test_node_summaries_straight_from_json_equal_the_models(items: object) -> None:
    payload = json.dumps({"kind": "List", "items": items})
    expected = [NodeSummary.of(n) for n in parse_response(NodeList, payload).items]
    assert parse_node_summaries(payload.encode()) == expected


def test_node_summaries_of_the_reference_example_and_the_simulator() -> None:
    example = (REFERENCE_EXAMPLES / "nodes_list.json").read_bytes()
    world = World(seed=3, clusters=2, nodes_per_cluster=50, now_ns=lambda: 1_700_000_000 * 10**9)
    bodies = [example, *(world.node_list_bytes(uid) for uid in world.clusters)]
    for body in bodies:
        expected = [NodeSummary.of(n) for n in parse_response(NodeList, body).items]
        assert expected and parse_node_summaries(body) == expected


@pytest.mark.parametrize(
    "payload", [b"", b"[]", b"{", b"\xff\xfe", b'"text"', b"null", b'{"items": 1'], ids=repr
)
def test_node_summaries_refuse_what_parse_response_refuses(payload: bytes) -> None:
    with pytest.raises(ResponseParseError):
        parse_response(NodeList, payload)
    with pytest.raises(ResponseParseError):
        parse_node_summaries(payload, endpoint="/nodes")
