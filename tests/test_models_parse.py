"""One way from bytes to a model: node lists read into summaries by the Node model itself, the
case-insensitive key tables, the timestamp cache, and the parse benchmark's report."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from exporter.cce import models
from exporter.cce.errors import ResponseParseError
from exporter.cce.models import (
    CaseInsensitive,
    NodeSummary,
    parse_node_page,
    parse_timestamp,
)


def _case_insensitive_models() -> list[type[CaseInsensitive]]:
    found = [
        value
        for value in vars(models).values()
        if isinstance(value, type) and issubclass(value, CaseInsensitive)
    ]
    return [m for m in found if m is not CaseInsensitive]


@pytest.mark.parametrize("model", _case_insensitive_models(), ids=lambda m: m.__name__)
def test_no_key_table_entry_folds_onto_a_field(model: type[CaseInsensitive]) -> None:
    """A table entry spelt like a field in another case would let that spelling skip folding."""
    fields = {(f.alias or name).lower() for name, f in model.model_fields.items()}
    assert not {key for key in model._other_keys if key.lower() in fields}
    assert model._other_keys <= model._plain_keys


def test_keys_no_field_reads_do_not_stop_case_folding() -> None:
    body = {
        "items": [
            {
                "metadata": {"uid": "n1"},
                "spec": {"login": {}, "FLAVOR": "s6", "newKey": 1},
                "status": {"deleteStatus": {}, "JobId": "j1", "PHASE": "Active"},
            }
        ]
    }
    (node,), _ = parse_node_page(json.dumps(body).encode())
    assert (node.flavor, node.job_id, node.phase) == ("s6", "j1", "Active")


def test_a_node_page_keeps_summaries_and_the_next_marker() -> None:
    body = (
        b'{"items": [{"metadata": {"uid": "n1", "name": "a",'
        b' "creationTimestamp": "2018-08-02 03:48:58.968214406 +0000 UTC",'
        b' "annotations": {"kubernetes.io/node-pool.id": "p1"}},'
        b' "spec": {"flavor": "s6", "az": "az1", "os": "EulerOS"},'
        b' "status": {"phase": "Active", "privateIP": "10.0.0.1",'
        b' "lastProbeTime": "2018-08-02T03:50:00Z", "configurationUpToDate": "true"}}, 7],'
        b' "pageInfo": {"nextMarker": "n1"}}'
    )
    nodes, marker = parse_node_page(body)
    assert marker == "n1"
    assert nodes == [
        NodeSummary(
            id="n1",
            name="a",
            phase="Active",
            flavor="s6",
            az="az1",
            os="EulerOS",
            nodepool_id="p1",
            private_ip="10.0.0.1",
            job_id=None,
            created=1533181738.968214,
            last_probe=1533181800.0,
            configuration_up_to_date=True,
        )
    ]
    assert parse_node_page(b'{"items": [], "pageInfo": {"nextMarker": " "}}') == ([], None)


@pytest.mark.parametrize("payload", [b"[]", b"{", b"\xff{}", b'{"items": 1'], ids=repr)
def test_a_node_page_refuses_what_is_not_a_list_answer(payload: bytes) -> None:
    with pytest.raises(ResponseParseError):
        parse_node_page(payload, endpoint="/nodes")


def test_cached_timestamps_are_shared_and_long_strings_are_not_kept() -> None:
    text = "2018-08-02 03:48:58.968214406 +0000 UTC"
    assert parse_timestamp(text) is parse_timestamp("".join(text))  # one cached datetime
    long = "2018-08-02T03:48:58Z" + " " * 100
    assert parse_timestamp(long) == parse_timestamp(text.replace(".968214406", ""))
    assert parse_timestamp(long) is not parse_timestamp(long)


@pytest.mark.parametrize("seconds", [-62_135_596_801, -253_402_300_799, -1e11])
def test_a_number_before_year_one_is_no_timestamp_and_keeps_the_node(seconds: float) -> None:
    assert parse_timestamp(seconds) is None
    body = json.dumps({"items": [{"metadata": {"uid": "n1", "creationTimestamp": seconds}}]})
    (node,), _ = parse_node_page(body.encode())
    assert node.id == "n1" and node.created is None


def test_the_parse_benchmark_reports_every_figure() -> None:
    command = [sys.executable, "-m", "bench.parse", "--pages", "3", "--nodes", "4"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["nodes"] == 12 and report["pages"] == 3
    assert report["peak_rss_mb"] >= report["rss_before_mb"] > 0
    assert report["parse_cpu_s"] >= 0
