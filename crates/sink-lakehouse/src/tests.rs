use std::sync::Arc;

use deltalake::arrow::array::{Array, AsArray, Int64Array, StringArray};
use deltalake::arrow::datatypes::{DataType, Field, Int64Type, Schema};

use super::*;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("name", DataType::Utf8, true)]))
}

fn batch(ids: &[i64]) -> RecordBatch {
    let names: Vec<String> = ids.iter().map(|i| format!("n{i}")).collect();
    RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(ids.to_vec())), Arc::new(StringArray::from(names))])
        .unwrap()
}

fn checkpoint(epoch: u64, offset: i64) -> Checkpoint {
    Checkpoint { task: "t1".into(), epoch, position: serde_json::json!({"next": {"0": offset}}) }
}

async fn ids(config: &LakehouseSinkConfig) -> Vec<i64> {
    let out = query_table(config, "SELECT id FROM t ORDER BY id").await.unwrap();
    out.iter().flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec()).collect()
}

#[tokio::test]
async fn commit_carries_the_checkpoint_and_is_idempotent_per_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let config = LakehouseSinkConfig::new(dir.path().to_str().unwrap(), "public", "orders");

    let mut sink = DeltaSink::new("t1", config.clone()).unwrap();
    assert_eq!(sink.open(schema()).await.unwrap(), None, "a new table has no checkpoint");
    sink.write(batch(&[1, 2, 3])).await.unwrap();
    assert_eq!(sink.buffered_rows(), 3);
    let stats = sink.commit(&checkpoint(1, 3)).await.unwrap();
    assert_eq!(stats.rows, 3);
    assert!(stats.version.is_some());
    // a position-only commit (nothing written) still moves the checkpoint
    sink.commit(&checkpoint(2, 5)).await.unwrap();
    // an epoch the table holds is skipped, whatever is buffered
    sink.write(batch(&[99])).await.unwrap();
    assert_eq!(sink.commit(&checkpoint(2, 5)).await.unwrap(), CommitStats::default());
    drop(sink);

    let mut reopened = DeltaSink::new("t1", config.clone()).unwrap();
    assert_eq!(reopened.open(schema()).await.unwrap(), Some(checkpoint(2, 5)));
    reopened.write(batch(&[4])).await.unwrap();
    reopened.commit(&checkpoint(3, 6)).await.unwrap();
    assert_eq!(ids(&config).await, vec![1, 2, 3, 4]);

    // another task's checkpoint in the same table is its own
    let mut other = DeltaSink::new("t2", config.clone()).unwrap();
    assert_eq!(other.open(schema()).await.unwrap(), None);
}

#[tokio::test]
async fn checkpoints_survive_delta_log_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let config = LakehouseSinkConfig::new(dir.path().to_str().unwrap(), "s", "many");
    let mut sink = DeltaSink::new("t1", config.clone()).unwrap();
    sink.checkpoint_interval = 5;
    sink.open(schema()).await.unwrap();
    for epoch in 1..=12u64 {
        sink.write(batch(&[epoch as i64])).await.unwrap();
        sink.commit(&checkpoint(epoch, epoch as i64)).await.unwrap();
    }
    let mut reopened = DeltaSink::new("t1", config.clone()).unwrap();
    assert_eq!(reopened.open(schema()).await.unwrap(), Some(checkpoint(12, 12)));
    assert_eq!(ids(&config).await, (1..=12).collect::<Vec<i64>>());
}

#[tokio::test]
async fn a_new_mapped_column_is_added_to_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let config = LakehouseSinkConfig::new(dir.path().to_str().unwrap(), "s", "evolve");
    let mut sink = DeltaSink::new("t1", config.clone()).unwrap();
    sink.open(schema()).await.unwrap();
    sink.write(batch(&[1])).await.unwrap();
    sink.commit(&checkpoint(1, 1)).await.unwrap();

    let wider = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("extra", DataType::Utf8, true),
    ]));
    let mut sink = DeltaSink::new("t1", config.clone()).unwrap();
    sink.open(wider.clone()).await.unwrap();
    let rows = RecordBatch::try_new(
        wider,
        vec![
            Arc::new(Int64Array::from(vec![2])),
            Arc::new(StringArray::from(vec!["n2"])),
            Arc::new(StringArray::from(vec!["x"])),
        ],
    )
    .unwrap();
    sink.write(rows).await.unwrap();
    sink.commit(&checkpoint(2, 2)).await.unwrap();
    let out = query_table(&config, "SELECT id, extra FROM t ORDER BY id").await.unwrap();
    let extra: Vec<Option<String>> = out
        .iter()
        .flat_map(|b| b.column(1).as_string::<i32>().iter().map(|v| v.map(str::to_string)).collect::<Vec<_>>())
        .collect();
    assert_eq!(extra, vec![None, Some("x".to_string())]);
}

#[test]
fn config_validation_names_the_field() {
    let err = LakehouseSinkConfig::new("/tmp", "a/b", "t").validate().unwrap_err();
    assert!(err.to_string().starts_with("sink.schema"), "{err}");
    let err = LakehouseSinkConfig::new("", "public", "t").validate().unwrap_err();
    assert!(err.to_string().starts_with("sink.root"), "{err}");
}

fn change_schema(extra: bool) -> SchemaRef {
    let mut fields = vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new(rtsync_core::OP_COLUMN, DataType::Utf8, false),
        Field::new(format!("{UNCHANGED_PREFIX}name"), DataType::Boolean, true),
    ];
    if extra {
        fields.push(Field::new("extra", DataType::Int64, true));
    }
    Arc::new(Schema::new(fields))
}

fn changes(rows: &[(i64, Option<&str>, &str, bool)]) -> RecordBatch {
    RecordBatch::try_new(
        change_schema(false),
        vec![
            Arc::new(Int64Array::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
            Arc::new(StringArray::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
            Arc::new(StringArray::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
            Arc::new(deltalake::arrow::array::BooleanArray::from(rows.iter().map(|r| Some(r.3)).collect::<Vec<_>>())),
        ],
    )
    .unwrap()
}

async fn id_names(config: &LakehouseSinkConfig) -> Vec<(i64, Option<String>)> {
    let out = query_table(config, "SELECT id, name FROM t ORDER BY id").await.unwrap();
    out.iter()
        .flat_map(|b| {
            let ids = b.column(0).as_primitive::<Int64Type>();
            let names = b.column(1).as_string::<i32>();
            (0..b.num_rows())
                .map(|i| (ids.value(i), names.is_valid(i).then(|| names.value(i).to_string())))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn upsert_mode_mirrors_the_source_table() {
    let dir = tempfile::tempdir().unwrap();
    let config = LakehouseSinkConfig::new(dir.path().to_str().unwrap(), "public", "mirror");
    let mut sink = DeltaSink::upsert("t1", config.clone(), vec!["id".into()]).unwrap();
    assert_eq!(sink.open(change_schema(false)).await.unwrap(), None);
    // snapshot rows: appended
    sink.write(changes(&[(1, Some("a"), "r", false), (2, Some("b"), "r", false), (3, Some("c"), "r", false)]))
        .await
        .unwrap();
    sink.commit(&checkpoint(1, 1)).await.unwrap();
    assert_eq!(id_names(&config).await, vec![(1, Some("a".into())), (2, Some("b".into())), (3, Some("c".into()))]);

    // insert, update twice, delete, a primary-key change (delete old + insert new), TOAST unchanged
    sink.write(changes(&[(4, Some("d"), "c", false), (1, Some("a1"), "u", false)])).await.unwrap();
    sink.write(changes(&[
        (1, Some("a2"), "u", false),
        (2, None, "d", false),
        (3, None, "d", false),
        (30, Some("c"), "c", false),
    ]))
    .await
    .unwrap();
    sink.write(changes(&[(4, None, "u", true)])).await.unwrap();
    sink.commit(&checkpoint(2, 2)).await.unwrap();
    assert_eq!(
        id_names(&config).await,
        vec![(1, Some("a2".into())), (4, Some("d".into())), (30, Some("c".into()))],
        "last op per key wins; the unchanged TOAST value is kept"
    );

    // deleting what is not there changes nothing, but the checkpoint still moves
    sink.write(changes(&[(99, None, "d", false)])).await.unwrap();
    sink.commit(&checkpoint(3, 3)).await.unwrap();
    let mut again = DeltaSink::upsert("t1", config.clone(), vec!["id".into()]).unwrap();
    assert_eq!(again.open(change_schema(false)).await.unwrap(), Some(checkpoint(3, 3)));

    // a column added at the source is added to the table
    let wide = RecordBatch::try_new(
        change_schema(true),
        vec![
            Arc::new(Int64Array::from(vec![5])),
            Arc::new(StringArray::from(vec!["e"])),
            Arc::new(StringArray::from(vec!["c"])),
            Arc::new(deltalake::arrow::array::BooleanArray::from(vec![false])),
            Arc::new(Int64Array::from(vec![50])),
        ],
    )
    .unwrap();
    again.write(wide).await.unwrap();
    again.commit(&checkpoint(4, 4)).await.unwrap();
    let out = query_table(&config, "SELECT id, extra FROM t ORDER BY id").await.unwrap();
    let extra: Vec<Option<i64>> =
        out.iter().flat_map(|b| b.column(1).as_primitive::<Int64Type>().iter().collect::<Vec<_>>()).collect();
    assert_eq!(extra, vec![None, None, Some(50), None], "ids 1, 4, 5, 30");
    let cols = query_table(&config, "SELECT * FROM t LIMIT 1").await.unwrap()[0].schema();
    assert!(cols.field_with_name(rtsync_core::OP_COLUMN).is_err(), "no op column in the table");
    assert!(cols.field_with_name("__unchanged_name").is_err(), "no mask column in the table");
}

/// The PostgreSQL source's shape: `__unchanged` lists the TOAST columns an update left out.
type PgChange<'a> = (i64, Option<&'a str>, &'a str, Option<&'a [&'a str]>);

fn pg_changes(rows: &[PgChange<'_>]) -> RecordBatch {
    use deltalake::arrow::array::{ListBuilder, StringBuilder};
    let mut unchanged = ListBuilder::new(StringBuilder::new());
    for r in rows {
        match r.3 {
            Some(cols) => {
                for c in cols {
                    unchanged.values().append_value(c);
                }
                unchanged.append(true);
            }
            None => unchanged.append(false),
        }
    }
    let unchanged = unchanged.finish();
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new(rtsync_core::OP_COLUMN, DataType::Utf8, false),
            Field::new(rtsync_core::UNCHANGED_COLUMN, unchanged.data_type().clone(), true),
        ])),
        vec![
            Arc::new(Int64Array::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
            Arc::new(StringArray::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
            Arc::new(StringArray::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
            Arc::new(unchanged),
        ],
    )
    .unwrap()
}

#[tokio::test]
async fn truncate_and_listed_unchanged_columns() {
    let dir = tempfile::tempdir().unwrap();
    let config = LakehouseSinkConfig::new(dir.path().to_str().unwrap(), "public", "pg");
    let mut sink = DeltaSink::upsert("t1", config.clone(), vec!["id".into()]).unwrap();
    sink.open(pg_changes(&[]).schema()).await.unwrap();
    sink.write(pg_changes(&[(1, Some("a"), "c", None), (2, Some("b"), "c", None)])).await.unwrap();
    sink.commit(&checkpoint(1, 1)).await.unwrap();
    sink.write(pg_changes(&[(1, None, "u", Some(&["name"])), (2, Some("b2"), "u", Some(&[]))])).await.unwrap();
    sink.commit(&checkpoint(2, 2)).await.unwrap();
    assert_eq!(id_names(&config).await, vec![(1, Some("a".into())), (2, Some("b2".into()))], "the TOAST value is kept");
    // rows before a truncate are gone, rows after it stay, in one commit
    sink.write(pg_changes(&[
        (3, Some("c"), "c", None),
        (0, None, "t", None),
        (4, Some("d"), "c", None),
        (1, Some("a9"), "c", None),
    ]))
    .await
    .unwrap();
    sink.commit(&checkpoint(3, 3)).await.unwrap();
    assert_eq!(id_names(&config).await, vec![(1, Some("a9".into())), (4, Some("d".into()))]);
    // a truncate alone empties the table
    sink.write(pg_changes(&[(0, None, "t", None)])).await.unwrap();
    sink.commit(&checkpoint(4, 4)).await.unwrap();
    assert_eq!(id_names(&config).await, vec![]);
    let mut again = DeltaSink::upsert("t1", config.clone(), vec!["id".into()]).unwrap();
    assert_eq!(again.open(pg_changes(&[]).schema()).await.unwrap(), Some(checkpoint(4, 4)));
}
