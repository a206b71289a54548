//! The mapping stage alone: 8,192 Kafka messages of ~300 bytes of nested JSON per batch, eight
//! computed columns (bigint, three strings, double, decimal(18,2), timestamp, boolean) served by
//! the one-pass extractor, and the same plus one complex path (jsonpath-rust on the borrowed
//! tree). Throughput is reported in messages.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryBuilder, Int32Array, Int64Array, StringArray, TimestampMillisecondArray};
use arrow::record_batch::RecordBatch;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rtsync_core::{ColumnMapping, kafka};
use rtsync_mapping::{ColumnSpec, compile};

const MESSAGES: usize = 8_192;

/// A ~300-byte order (the shape of the end-to-end benchmark's messages).
fn order(i: usize) -> String {
    format!(
        "{{\"id\":{i},\"type\":\"order_created\",\"customer\":{{\"id\":{},\"name\":\"customer-{}\",\"tier\":\"gold\",\
         \"address\":{{\"city\":\"Zürich\",\"zip\":\"8001\"}}}},\"items\":[{{\"sku\":\"SKU-{:05}\",\"qty\":{},\
         \"price\":19.99}},{{\"sku\":\"SKU-00042\",\"qty\":1,\"price\":5.50}}],\"amount\":{}.{:02},\
         \"currency\":\"CHF\",\"paid\":{},\"created_at\":\"2026-11-25T12:{:02}:{:02}.123Z\"}}",
        i % 10_000,
        i % 10_000,
        i % 100_000,
        i % 9 + 1,
        i % 100_000,
        i % 100,
        !i.is_multiple_of(3),
        (i / 60) % 60,
        i % 60
    )
}

/// A source batch of [`MESSAGES`] orders, without keys or headers; and the average value size.
fn batch() -> (RecordBatch, usize) {
    let (mut keys, mut values) = (BinaryBuilder::new(), BinaryBuilder::new());
    let mut bytes = 0;
    for i in 0..MESSAGES {
        let value = order(i);
        bytes += value.len();
        keys.append_null();
        values.append_value(value);
    }
    let n = MESSAGES as i64;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(keys.finish()),
        Arc::new(values.finish()),
        Arc::new(TimestampMillisecondArray::from_iter_values(0..n).with_timezone("UTC")),
        Arc::new(Int32Array::from(vec![0; MESSAGES])),
        Arc::new(Int64Array::from_iter_values(0..n)),
        Arc::new(StringArray::from(vec![None::<&str>; MESSAGES])),
    ];
    (RecordBatch::try_new(kafka::kafka_source_schema(), columns).unwrap(), bytes / MESSAGES)
}

fn simple_columns() -> Vec<ColumnSpec> {
    vec![
        ColumnSpec::new("id", "$.id", "bigint"),
        ColumnSpec::new("customer", "$.customer.name", "string"),
        ColumnSpec::new("city", "$.customer.address.city", "string"),
        ColumnSpec::new("sku", "$.items[0].sku", "string"),
        ColumnSpec::new("price", "$.items[0].price", "double"),
        ColumnSpec::new("amount", "$.amount", "decimal(18,2)"),
        ColumnSpec::new("created_at", "$.created_at", "timestamp"),
        ColumnSpec::new("paid", "$.paid", "boolean"),
    ]
}

fn bench(c: &mut Criterion) {
    let (input, avg) = batch();
    eprintln!("{MESSAGES} messages of {avg} bytes on average");
    let simple = compile(&simple_columns()).unwrap();
    let mut with_complex = simple_columns();
    with_complex.push(ColumnSpec::new("skus", "$.items[*].sku", "string"));
    let with_complex = compile(&with_complex).unwrap();
    for mapping in [&simple, &with_complex] {
        let out = mapping.map(&input).unwrap();
        assert_eq!(out.rows.num_rows(), MESSAGES);
        assert!(out.rejected.is_empty());
    }

    let mut group = c.benchmark_group("map");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.bench_function("8_simple_paths", |b| b.iter(|| simple.map(black_box(&input)).unwrap()));
    group.bench_function("8_simple_1_complex", |b| b.iter(|| with_complex.map(black_box(&input)).unwrap()));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
