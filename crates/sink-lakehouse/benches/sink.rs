//! The Delta sink's write + commit path: 65,536 mapped rows of 8 columns per commit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Decimal128Array, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rtsync_core::{Checkpoint, Sink};
use rtsync_sink_lakehouse::{DeltaSink, LakehouseSinkConfig};

const ROWS: usize = 65_536;

fn batch() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("customer", DataType::Utf8, true),
        Field::new("city", DataType::Utf8, true),
        Field::new("sku", DataType::Utf8, true),
        Field::new("price", DataType::Float64, true),
        Field::new("amount", DataType::Decimal128(18, 2), true),
        Field::new("created_at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
        Field::new("paid", DataType::Boolean, true),
    ]));
    let n = ROWS as i64;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(0..n)),
        Arc::new(StringArray::from_iter_values((0..n).map(|i| format!("customer-{}", i % 10_000)))),
        Arc::new(StringArray::from_iter_values((0..n).map(|i| ["Zürich", "Basel", "Bern"][(i % 3) as usize]))),
        Arc::new(StringArray::from_iter_values((0..n).map(|i| format!("SKU-{:05}", i % 100_000)))),
        Arc::new(Float64Array::from_iter_values((0..n).map(|i| i as f64 * 0.25))),
        Arc::new(
            Decimal128Array::from_iter_values((0..n).map(|i| i as i128 * 7)).with_precision_and_scale(18, 2).unwrap(),
        ),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values((0..n).map(|i| 1_764_000_000_000_000 + i * 1000))
                .with_timezone("UTC"),
        ),
        Arc::new(BooleanArray::from_iter((0..n).map(|i| Some(i % 3 != 0)))),
    ];
    RecordBatch::try_new(schema, columns).unwrap()
}

fn write_and_commit(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = LakehouseSinkConfig::new(dir.path().to_str().unwrap(), "bench", "sink");
    let rows = batch();
    let mut sink = DeltaSink::new("bench", config).unwrap();
    rt.block_on(sink.open(rows.schema())).unwrap();
    let mut epoch = 0u64;
    let mut group = c.benchmark_group("delta_sink");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(20);
    group.bench_function("write_commit_65536_rows_8_cols", |b| {
        b.iter(|| {
            epoch += 1;
            rt.block_on(async {
                sink.write(rows.clone()).await.unwrap();
                sink.commit(&Checkpoint { task: "bench".into(), epoch, position: serde_json::json!({"n": epoch}) })
                    .await
                    .unwrap();
            })
        })
    });
    group.finish();
}

criterion_group!(benches, write_and_commit);
criterion_main!(benches);
