"""The models' fast paths (pydantic-core first, Python only for odd values) keep every tolerance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from exporter.cce.models import (
    NodeList,
    NodeSpec,
    _fast_utc_timestamp,
    parse_response,
    parse_timestamp,
)


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
    fast = _fast_utc_timestamp(text)
    assert fast is None or fast == expected
    # Twice: the one-entry cache must give the same answer.
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


def test_case_insensitive_keys_after_the_plain_key_cache_warmed() -> None:
    for _ in range(3):
        spec = NodeSpec.model_validate({"Flavor": "s6", "login": {}, "ROOTVOLUME": {"size": 1}})
        assert spec.flavor == "s6" and spec.root_volume.size == 1
        exact = NodeSpec.model_validate({"flavor": "a", "FLAVOR": "b"})
        assert exact.flavor == "a"  # the exact spelling wins
