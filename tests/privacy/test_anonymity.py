"""k-anonymity and l-diversity: hand-made tables with known answers, and pyCANON as the oracle on the same
generalized tables (the shipped taxi data, a simulated span, random tables)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pycanon.anonymity
import pytest

from flywheel import schemas
from flywheel.pipelines.taxi.config import shipped_data
from flywheel.pipelines.taxi.simulate import simulate_spans
from flywheel.privacy import anonymity, data, policy

TAXI = policy.load(policy.beside(schemas.schema_path("taxi")))


def make_policy(quasi: dict, sensitive=("s",), k: int = 2, l: int = 2) -> policy.Policy:  # noqa: E741
    columns = {name: {"role": "quasi_identifier", "reason": "r", **({"bin": b} if b else {})}
               for name, b in quasi.items()}
    columns.update({name: {"role": "sensitive", "reason": "r"} for name in sensitive})
    return policy.parse({"format": policy.FORMAT, "thresholds": {"k": k, "l": l}, "columns": columns}, "test")


def oracle(table: pa.Table, found: policy.Policy) -> tuple[int, int]:
    """pyCANON's k and l on the same generalized table. pandas' groupby leaves rows with a missing key out, so a
    missing value is written as one more value (as flywheel counts it)."""
    generalized = anonymity.generalize(table, found)
    frame = pa.table({name: generalized.column(name).cast(pa.string()).fill_null("(missing)")
                      for name in generalized.column_names}).to_pandas()
    quasi = [c.name for c in found.quasi_identifiers]
    sensitive = list(found.sensitive)
    return pycanon.anonymity.k_anonymity(frame, quasi), pycanon.anonymity.l_diversity(frame, quasi, sensitive)


def test_known_answer_with_bins_and_missing_values():
    table = pa.table({"lat": [41.001, 41.009, 41.011, 41.019, None, None, 41.5],
                      "town": ["a", "a", "a", "a", "b", "b", "c"],
                      "s": ["x", "y", "x", "x", "x", None, "z"]})
    found = anonymity.measure(table, make_policy({"lat": 0.01, "town": None}, k=2, l=2))
    # classes: [41.00,41.01)+a: 2 rows (x, y); [41.01,41.02)+a: 2 (x, x); missing+b: 2 (x, missing); [41.5)+c: 1 (z)
    assert (found.k, found.l, found.classes) == (1, 1, 4)
    assert (found.classes_under_k, found.rows_under_k) == (1, 1)
    assert (found.classes_under_l, found.rows_under_l) == (2, 3)
    assert found.smallest[0].rows == 1 and found.smallest[0].values == {"lat": "[41.50, 41.51)", "town": "c"}
    assert [c.rows for c in found.smallest] == [1, 2, 2, 2]
    assert found.smallest[3].values == {"lat": "(missing)", "town": "b"}
    assert found.smallest[3].distinct == {"s": 2}
    assert not found.passed and not found.k_passed and not found.l_passed
    assert oracle(table, make_policy({"lat": 0.01, "town": None})) == (1, 1)


def test_known_answer_passing():
    table = pa.table({"hour": [0, 1, 2, 3, 4, 5], "s": ["a", "b", "a", "b", "a", "b"]})
    found = anonymity.measure(table, make_policy({"hour": 3}, k=3, l=2))
    assert (found.k, found.l, found.classes, found.rows_under_k) == (3, 2, 2, 0)
    assert found.passed and found.plan == ()


def test_single_changes_and_plan_on_known_table():
    table = pa.table({"x": [0, 1, 10, 11, 20, 21, 30, 31], "t": ["a", "b"] * 4, "s": ["p"] * 8})
    found = anonymity.measure(table, make_policy({"x": 1, "t": None}, k=2, l=1))
    changes = {c.text: (c.k, c.rows_under_k, c.classes) for c in found.single_changes}
    assert changes == {"x in bins of 2 (x2)": (1, 8, 8), "x in bins of 5 (x5)": (1, 8, 8),
                       "x in bins of 10 (x10)": (1, 8, 8), "drop x": (4, 0, 2), "drop t": (1, 8, 8)}
    # Datafly: x has the most distinct values, so it is generalized first (10 times coarser), then again
    assert [(c.text, c.k) for c in found.plan] == [("x in bins of 10 (x10)", 1), ("x in bins of 100 (x100)", 4)]


def test_a_binned_column_of_text_is_named():
    table = pa.table({"town": ["a"], "s": ["x"]})
    with pytest.raises(anonymity.AnonymityError, match=r"column 'town': the policy bins it \(bin 0.5\): expected "
                                                        "numbers, found string"):
        anonymity.measure(table, make_policy({"town": 0.5}))


def test_a_declared_column_the_data_lacks_is_named():
    with pytest.raises(anonymity.AnonymityError, match="the data has no column 's'"):
        anonymity.measure(pa.table({"town": ["a"]}), make_policy({"town": None}))


def taxi_table() -> pa.Table:
    return pcsv.read_csv(shipped_data())


def test_shipped_taxi_data_against_pycanon():
    table = taxi_table()
    found = anonymity.measure(table, TAXI)
    assert (found.k, found.l) == oracle(table, TAXI) == (1, 1)
    assert found.rows == 15_002 and found.classes == 14_996 and found.rows_under_k == 15_002


@pytest.mark.parametrize("quasi", [
    {"pickup_community_area": None, "dropoff_community_area": None},
    {"pickup_latitude": 0.05, "pickup_longitude": 0.05, "trip_start_hour": 6},
    {"trip_start_timestamp": 86400 * 365},
    {"company": None, "trip_start_month": 3},
])
def test_taxi_generalizations_against_pycanon(quasi):
    table = taxi_table()
    found_policy = make_policy(quasi, sensitive=("payment_type",))
    found = anonymity.measure(table, found_policy, suggest=False)
    assert (found.k, found.l) == oracle(table, found_policy)


def test_simulated_span_read_from_its_folder_against_pycanon(tmp_path):
    simulate_spans(str(tmp_path), spans=1, drift_from=None, rows=3000, seed=3)
    table, files = data.read(str(tmp_path), TAXI)
    assert table.num_rows == 3000 and len(files) == 1
    found = anonymity.measure(table, TAXI)
    assert (found.k, found.l) == oracle(table, TAXI)
    coarse = make_policy({"pickup_latitude": 0.1, "pickup_longitude": 0.1, "trip_start_hour": 4, "company": None},
                         sensitive=("payment_type",))
    table, _ = data.read(str(tmp_path), coarse)
    found = anonymity.measure(table, coarse)
    assert (found.k, found.l) == oracle(table, coarse)


@pytest.mark.parametrize("seed", range(6))
def test_random_tables_against_pycanon(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 3000))
    values = rng.normal(0, 1, n)
    table = pa.table({"a": pa.array(values, mask=rng.random(n) < 0.05),
                      "b": rng.integers(0, int(rng.integers(2, 6)), n),
                      "c": pa.array(rng.choice(["u", "v", "w"], n), mask=rng.random(n) < 0.1),
                      "s": pa.array(rng.choice(["p", "q", "r", "t"], n), mask=rng.random(n) < 0.1),
                      "s2": rng.integers(0, 3, n)})
    found_policy = make_policy({"a": float(rng.choice([0.5, 1.0, 2.0])), "b": None, "c": None},
                               sensitive=("s", "s2"))
    found = anonymity.measure(table, found_policy)
    assert (found.k, found.l) == oracle(table, found_policy)
    assert found.rows == n


def test_read_names_a_file_without_a_declared_column(tmp_path):
    (tmp_path / "data.csv").write_text("pickup_latitude,company\n41.9,a\n")
    with pytest.raises(data.DataError, match=f"privacy: {tmp_path}/data.csv: no column 'pickup_longitude'"):
        data.read(str(tmp_path), TAXI)


def test_read_names_a_missing_folder(tmp_path):
    with pytest.raises(data.DataError, match="privacy: input .*none' does not exist"):
        data.read(str(tmp_path / "none"), TAXI)
