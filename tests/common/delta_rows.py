# The independent readers of the merge-on-read tests: reads a Delta table with Python
# `deltalake`'s QueryBuilder (DataFusion over the Delta log), with polars `read_delta` and with
# DuckDB's `delta_scan` (the delta extension from the `duckdb-ext-delta` wheel, loaded from its
# file: no download), all of which apply deletion vectors, and prints JSON
#   {"columns": [name, ...], "querybuilder": [[cell, ...], ...], "polars": [...], "duckdb": [...]}
# with the rows of each reader sorted by the first column.
#
# usage: python delta_rows.py TABLE_PATH
import glob
import json
import os
import sys

import duckdb
import duckdb_ext
import polars as pl
import pyarrow as pa
from deltalake import DeltaTable, QueryBuilder

path = sys.argv[1]
table = DeltaTable(path)
columns = [f["name"] for f in json.loads(table.schema().to_json())["fields"]]
read = QueryBuilder().register("t", table).execute("SELECT * FROM t")
by_query = pa.RecordBatchReader.from_stream(read).read_all().to_pylist()
by_polars = pl.read_delta(path).to_dicts()

# The wheel ships the extension for the duckdb version it is pinned with.
extension = glob.glob(
    os.path.join(duckdb_ext.__path__[0], "extensions", "v" + duckdb.__version__, "*", "delta.duckdb_extension")
)[0]
con = duckdb.connect(config={"allow_unsigned_extensions": "true", "autoinstall_known_extensions": "false"})
con.execute(f"LOAD '{extension}'")
by_duckdb = con.execute("SELECT * FROM delta_scan(?)", [os.path.abspath(path)]).fetch_arrow_table().to_pylist()


def rows(records):
    return sorted(([r.get(c) for c in columns] for r in records), key=lambda r: r[0])


print(
    json.dumps(
        {
            "columns": columns,
            "querybuilder": rows(by_query),
            "polars": rows(by_polars),
            "duckdb": rows(by_duckdb),
        },
        default=str,
    )
)
