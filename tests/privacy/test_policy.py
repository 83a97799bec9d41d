"""The privacy policy file: the taxi pipeline's parses and covers its schema; each mistake is named."""

from __future__ import annotations

import copy
import json

import pytest

from flywheel import schemas
from flywheel.data import parsing
from flywheel.pipelines.taxi.simulate import ID_COLUMN
from flywheel.privacy import policy

TAXI = policy.beside(schemas.schema_path("taxi"))
GOOD = {"format": policy.FORMAT, "thresholds": {"k": 5, "l": 2},
        "columns": {"id": {"role": "direct_identifier", "action": "pseudonymize", "reason": "names a row"},
                    "lat": {"role": "quasi_identifier", "bin": 0.01, "reason": "a place"},
                    "town": {"role": "quasi_identifier", "reason": "a place"},
                    "pay": {"role": "sensitive", "reason": "finances"},
                    "fare": {"role": "ordinary", "reason": "derived"}}}


def test_taxi_policy_declares_every_schema_column_and_the_trip_id():
    found = policy.load(TAXI)
    columns = [c.name for c in parsing.columns_from_schema(parsing.load_schema(schemas.schema_path("taxi")))]
    policy.check_columns(found, [ID_COLUMN, *columns], "the taxi schema")
    assert found.column("trip_id").role == policy.DIRECT and found.column("trip_id").action == "pseudonymize"
    assert found.column("pickup_latitude").bin == 0.01 and found.column("trip_start_timestamp").bin == 3600
    assert found.sensitive == ("payment_type",)
    assert found.column("company").role == policy.QUASI
    assert (found.thresholds.k, found.thresholds.l) == (5, 2)
    assert all(len(c.reason) > 20 for c in found.columns)


def test_taxi_policy_is_packaged_beside_the_schema():
    assert policy.beside(schemas.schema_path("taxi")).endswith("taxi/privacy.json")


def changed(path: str, value) -> dict:
    document = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    target = document
    for key in parents:
        target = target[key]
    if value is None:
        del target[last]
    else:
        target[last] = value
    return document


@pytest.mark.parametrize("document, message", [
    (changed("columns.lat.role", "secret"), "column 'lat': role: expected one of direct_identifier, quasi_identifier, "
                                            'sensitive, ordinary, found "secret"'),
    (changed("columns.id.action", "hash"), "column 'id': action: expected one of pseudonymize, drop, found \"hash\""),
    (changed("columns.id.action", None), "column 'id': action: expected one of pseudonymize, drop, found null"),
    (changed("columns.lat.bin", 0), "column 'lat': bin: expected a number > 0"),
    (changed("columns.lat.bin", "0.01"), "column 'lat': bin: expected a number > 0 .*found \"0.01\""),
    (changed("columns.pay.bin", 1), "column 'pay': bin: expected only reason, role for a sensitive, found 1"),
    (changed("columns.fare.reason", ""), "column 'fare': reason: expected a sentence"),
    (changed("columns.fare", "ordinary"), "column 'fare': expected an object"),
    (changed("thresholds.k", 0), 'thresholds.k: expected a whole number >= 1, found 0'),
    (changed("thresholds.l", 1.5), 'thresholds.l: expected a whole number >= 1, found 1.5'),
    (changed("thresholds.k", True), 'thresholds.k: expected a whole number >= 1, found true'),
    (changed("thresholds.t", 0.2), 'thresholds.t: expected only k and l'),
    (changed("thresholds", None), 'thresholds: expected an object'),
    (changed("format", "v2"), "format: expected 'flywheel.privacy/1', found \"v2\""),
    (changed("extra", 1), "extra: expected only format, thresholds and columns"),
    (changed("columns", {"fare": {"role": "ordinary", "reason": "x"}}), "columns: expected at least one "
                                                                        "quasi_identifier"),
])
def test_bad_policy_is_named(tmp_path, document, message):
    path = tmp_path / "privacy.json"
    path.write_text(json.dumps(document))
    with pytest.raises(policy.PolicyError, match=f"privacy policy {path}: {message}"):
        policy.load(str(path))


def test_unknown_and_undeclared_columns_are_named():
    found = policy.parse(GOOD, "p.json")
    with pytest.raises(policy.PolicyError, match="p.json: column 'town': expected a column of the schema "
                                                 r"\(id, lat, pay, fare, tips\), found none of that name"):
        policy.check_columns(found, ["id", "lat", "pay", "fare", "tips"], "the schema")
    with pytest.raises(policy.PolicyError, match="p.json: column 'tips' of the schema: expected a role .* found "
                                                 r"none \(undeclared: tips\)"):
        policy.check_columns(found, ["id", "lat", "town", "pay", "fare", "tips"], "the schema")
    policy.check_columns(found, ["id", "lat", "town", "pay", "fare", "tips"], "the schema", require_all=False)


def test_not_json_and_missing_file_are_named(tmp_path):
    path = tmp_path / "privacy.json"
    path.write_text("{")
    with pytest.raises(policy.PolicyError, match=f"privacy policy {path}: not valid JSON"):
        policy.load(str(path))
    with pytest.raises(policy.PolicyError, match=f"privacy policy {tmp_path}/none.json: cannot read"):
        policy.load(str(tmp_path / "none.json"))


def test_round_trip():
    found = policy.parse(GOOD, "p.json")
    assert policy.parse(found.to_dict(), "again") == policy.Policy(found.columns, found.thresholds, "again")
