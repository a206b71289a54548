# The independent readers of the merge-on-read tests: reads a Delta table with Python
# `deltalake`'s QueryBuilder (DataFusion over the Delta log) and with polars `read_delta`, both of
# which apply deletion vectors, and prints JSON
#   {"columns": [name, ...], "querybuilder": [[cell, ...], ...], "polars": [[cell, ...], ...]}
# with the rows of each reader sorted by the first column.
#
# usage: python delta_rows.py TABLE_PATH
import json
import sys

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable, QueryBuilder

path = sys.argv[1]
table = DeltaTable(path)
columns = [f["name"] for f in json.loads(table.schema().to_json())["fields"]]
read = QueryBuilder().register("t", table).execute("SELECT * FROM t")
by_query = pa.RecordBatchReader.from_stream(read).read_all().to_pylist()
by_polars = pl.read_delta(path).to_dicts()


def rows(records):
    return sorted(([r.get(c) for c in columns] for r in records), key=lambda r: r[0])


print(json.dumps({"columns": columns, "querybuilder": rows(by_query), "polars": rows(by_polars)}))
