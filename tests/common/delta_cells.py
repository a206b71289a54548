# The independent reader of the type round-trip tests: reads a Delta table with the `deltalake`
# package (not rtsync's code) and prints JSON with
#   "schema": {column: Delta type as the table's metadata states it, e.g. "decimal(12,2)"},
#   "arrow":  {column: Arrow type the reader produces, e.g. "timestamp[us, tz=UTC]"},
#   "rows":   {str(key value): {column: canonical text of the cell, or null}}.
# Canonical text: integers in decimal; booleans "true"/"false"; floats by repr (so "nan", "inf",
# "-0.0", and a float32 as the double it widens to); decimals in plain notation, all scale digits;
# strings as they are; binary as lowercase hex; dates as ISO 8601; timestamps as ISO 8601 with
# "+00:00" when the column has a time zone. A date or timestamp that Python's datetime cannot
# hold (before year 1, after 9999) is "days:<days since 1970-01-01>" or
# "us:<microseconds since 1970-01-01T00:00:00>".
#
# The table is read through `QueryBuilder` (DataFusion over the Delta log), which applies deletion
# vectors, so merge-on-read tables read as their current rows; `to_pyarrow_table()` refuses them.
# Its string and binary view columns are cast back to plain string and binary, so "arrow" names
# the same types either way.
#
# usage: python delta_cells.py TABLE_PATH KEY_COLUMN [STORAGE_OPTIONS_JSON]
# (an object-store table, s3:// or az://, is read with the storage options given)
import datetime
import decimal
import json
import sys

import pyarrow as pa
from deltalake import DeltaTable, QueryBuilder

path, key = sys.argv[1], sys.argv[2]
options = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
table = DeltaTable(path, storage_options=options)
schema = {f["name"]: f["type"] for f in json.loads(table.schema().to_json())["fields"]}
read = QueryBuilder().register("t", table).execute("SELECT * FROM t")
data = pa.RecordBatchReader.from_stream(read).read_all()
PLAIN = {pa.string_view(): pa.string(), pa.binary_view(): pa.binary()}
data = data.cast(pa.schema([f.with_type(PLAIN.get(f.type, f.type)) for f in data.schema]))

EPOCH_DAY = datetime.date(1970, 1, 1)
EPOCH = datetime.datetime(1970, 1, 1)


def dates(column):
    out = []
    for days in column.cast(pa.int32()).to_pylist():
        if days is None:
            out.append(None)
            continue
        try:
            out.append((EPOCH_DAY + datetime.timedelta(days=days)).isoformat())
        except (OverflowError, ValueError):
            out.append("days:%d" % days)
    return out


def timestamps(column, utc):
    out = []
    for micros in column.cast(pa.int64()).to_pylist():
        if micros is None:
            out.append(None)
            continue
        try:
            value = EPOCH + datetime.timedelta(microseconds=micros)
            if utc:
                value = value.replace(tzinfo=datetime.timezone.utc)
            out.append(value.isoformat())
        except (OverflowError, ValueError):
            out.append("us:%d" % micros)
    return out


def scalar(value):
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError("no canonical text for %r (%s)" % (value, type(value).__name__))


columns = {}
for name in data.column_names:
    column = data.column(name)
    if pa.types.is_date32(column.type):
        columns[name] = dates(column)
    elif pa.types.is_timestamp(column.type):
        columns[name] = timestamps(column, column.type.tz is not None)
    else:
        columns[name] = [scalar(v) for v in column.to_pylist()]

rows = {}
for i in range(data.num_rows):
    row = {name: values[i] for name, values in columns.items()}
    k = row[key]
    if k in rows:
        raise SystemExit("key %s appears twice" % k)
    rows[k] = row

print(json.dumps({
    "schema": schema,
    "arrow": {f.name: str(f.type) for f in data.schema},
    "rows": rows,
}))
