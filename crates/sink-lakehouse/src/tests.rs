use std::sync::Arc;
use std::time::Duration;

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
async fn upsert_mode_mirrors_the_source_table_merge_on_read() {
    upsert_mode_mirrors_the_source_table(ApplyMode::MergeOnRead).await;
}

#[tokio::test]
async fn upsert_mode_mirrors_the_source_table_copy_on_write() {
    upsert_mode_mirrors_the_source_table(ApplyMode::CopyOnWrite).await;
}

async fn upsert_mode_mirrors_the_source_table(apply: ApplyMode) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LakehouseSinkConfig::new(dir.path().to_str().unwrap(), "public", "mirror");
    config.apply = apply;
    let mut sink = DeltaSink::upsert("t1", config.clone(), vec!["id".into()]).unwrap();
    assert_eq!(sink.open(change_schema(false)).await.unwrap(), None);
    assert_eq!(sink.apply_mode(), Some(apply));
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
async fn truncate_and_listed_unchanged_columns_merge_on_read() {
    truncate_and_listed_unchanged_columns(ApplyMode::MergeOnRead).await;
}

#[tokio::test]
async fn truncate_and_listed_unchanged_columns_copy_on_write() {
    truncate_and_listed_unchanged_columns(ApplyMode::CopyOnWrite).await;
}

async fn truncate_and_listed_unchanged_columns(apply: ApplyMode) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LakehouseSinkConfig::new(dir.path().to_str().unwrap(), "public", "pg");
    config.apply = apply;
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

/// One change row of the contract: (id, old id of a key change, name, big, op, unchanged).
type KeyChange<'a> = (i64, Option<i64>, Option<&'a str>, Option<&'a str>, &'a str, &'a [&'a str]);

fn key_changes(rows: &[KeyChange<'_>]) -> RecordBatch {
    use deltalake::arrow::array::{ListBuilder, StringBuilder};
    let mut unchanged = ListBuilder::new(StringBuilder::new());
    for r in rows {
        if r.5.is_empty() {
            unchanged.append(false);
        } else {
            for c in r.5 {
                unchanged.values().append_value(c);
            }
            unchanged.append(true);
        }
    }
    let unchanged = unchanged.finish();
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("big", DataType::Utf8, true),
            Field::new(rtsync_core::OP_COLUMN, DataType::Utf8, false),
            Field::new(rtsync_core::UNCHANGED_COLUMN, unchanged.data_type().clone(), true),
            Field::new(rtsync_core::before_key_column("id"), DataType::Int64, true),
        ])),
        vec![
            Arc::new(Int64Array::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
            Arc::new(StringArray::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
            Arc::new(StringArray::from(rows.iter().map(|r| r.3).collect::<Vec<_>>())),
            Arc::new(StringArray::from(rows.iter().map(|r| r.4).collect::<Vec<_>>())),
            Arc::new(unchanged),
            Arc::new(Int64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
        ],
    )
    .unwrap()
}

async fn id_name_big(config: &LakehouseSinkConfig) -> Vec<(i64, Option<String>, Option<String>)> {
    let out = query_table(config, "SELECT id, name, big FROM t ORDER BY id").await.unwrap();
    out.iter()
        .flat_map(|b| {
            let ids = b.column(0).as_primitive::<Int64Type>();
            let names = b.column(1).as_string::<i32>();
            let bigs = b.column(2).as_string::<i32>();
            (0..b.num_rows())
                .map(|i| {
                    (
                        ids.value(i),
                        names.is_valid(i).then(|| names.value(i).to_string()),
                        bigs.is_valid(i).then(|| bigs.value(i).to_string()),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn r(id: i64, name: &str, big: Option<&str>) -> (i64, Option<String>, Option<String>) {
    (id, Some(name.to_string()), big.map(str::to_string))
}

async fn commit(sink: &mut DeltaSink, epoch: &mut u64, rows: &[KeyChange<'_>]) {
    *epoch += 1;
    sink.write(key_changes(rows)).await.unwrap();
    sink.commit(&checkpoint(*epoch, *epoch as i64)).await.unwrap();
}

/// The fidelity contract: a key change carries every value the update did not send from the
/// old key's row, wherever that row is (the table, earlier in the commit, an earlier key change).
#[tokio::test]
async fn key_changes_carry_unsent_values_from_the_old_key_merge_on_read() {
    key_changes_carry_unsent_values_from_the_old_key(ApplyMode::MergeOnRead).await;
}

#[tokio::test]
async fn key_changes_carry_unsent_values_from_the_old_key_copy_on_write() {
    key_changes_carry_unsent_values_from_the_old_key(ApplyMode::CopyOnWrite).await;
}

async fn key_changes_carry_unsent_values_from_the_old_key(apply: ApplyMode) {
    const BIG: &[&str] = &["big"];
    let dir = tempfile::tempdir().unwrap();
    let mut config = LakehouseSinkConfig::new(dir.path().to_str().unwrap(), "public", "moves");
    config.apply = apply;
    let mut sink = DeltaSink::upsert("t1", config.clone(), vec!["id".into()]).unwrap();
    sink.open(key_changes(&[]).schema()).await.unwrap();
    let mut epoch = 0;
    commit(
        &mut sink,
        &mut epoch,
        &[
            (1, None, Some("a"), Some("B1"), "r", &[]),
            (2, None, Some("b"), Some("B2"), "r", &[]),
            (3, None, Some("c"), Some("B3"), "r", &[]),
            (4, None, Some("d"), None, "r", &[]),
            (5, None, Some("e"), Some("B5"), "r", &[]),
        ],
    )
    .await;

    // from the table: 3 → 200 (the reproduction); a NULL stays NULL: 4 → 400
    commit(
        &mut sink,
        &mut epoch,
        &[(200, Some(3), Some("c"), None, "u", BIG), (400, Some(4), Some("d"), None, "u", BIG)],
    )
    .await;
    assert_eq!(
        id_name_big(&config).await,
        vec![
            r(1, "a", Some("B1")),
            r(2, "b", Some("B2")),
            r(5, "e", Some("B5")),
            r(200, "c", Some("B3")),
            r(400, "d", None)
        ]
    );

    // a chain in one commit (1 → 10 → 11), then a TOAST-unchanged update under the new key;
    // a swap of two keys through a third (2 → 99, 5 → 2, 99 → 5)
    commit(
        &mut sink,
        &mut epoch,
        &[
            (10, Some(1), Some("a"), None, "u", BIG),
            (11, Some(10), Some("a2"), None, "u", BIG),
            (11, None, Some("a3"), None, "u", BIG),
            (99, Some(2), Some("b"), None, "u", BIG),
            (2, Some(5), Some("e"), None, "u", BIG),
            (5, Some(99), Some("b"), None, "u", BIG),
        ],
    )
    .await;
    assert_eq!(
        id_name_big(&config).await,
        vec![
            r(2, "e", Some("B5")),
            r(5, "b", Some("B2")),
            r(11, "a3", Some("B1")),
            r(200, "c", Some("B3")),
            r(400, "d", None)
        ]
    );

    // a key change of a row inserted in the same commit, then moved again; an update that
    // sends the value while changing the key; a delete and re-insert of a moved-away key
    commit(
        &mut sink,
        &mut epoch,
        &[
            (7, None, Some("g"), Some("B7"), "c", &[]),
            (70, Some(7), Some("g"), None, "u", BIG),
            (71, Some(70), Some("g2"), None, "u", BIG),
            (201, Some(200), Some("c"), Some("NEW"), "u", &[]),
            (200, None, Some("c-again"), Some("B200"), "c", &[]),
            (400, None, None, None, "d", &[]),
        ],
    )
    .await;
    assert_eq!(
        id_name_big(&config).await,
        vec![
            r(2, "e", Some("B5")),
            r(5, "b", Some("B2")),
            r(11, "a3", Some("B1")),
            r(71, "g2", Some("B7")),
            r(200, "c-again", Some("B200")),
            r(201, "c", Some("NEW")),
        ]
    );

    // a row updated (value unchanged) and then moved in the same commit takes its value from
    // ITS old key, not from whatever the table holds under the new key: 2 is updated, 11 moves
    // away to 12, then 2 moves onto 11; and 5 is updated, then moved to 55
    commit(
        &mut sink,
        &mut epoch,
        &[
            (2, None, Some("e2"), None, "u", BIG),
            (12, Some(11), Some("a3"), None, "u", BIG),
            (11, Some(2), Some("e2"), None, "u", BIG),
            (5, None, Some("b2"), None, "u", BIG),
            (55, Some(5), Some("b2"), None, "u", BIG),
        ],
    )
    .await;
    assert_eq!(
        id_name_big(&config).await,
        vec![
            r(11, "e2", Some("B5")),
            r(12, "a3", Some("B1")),
            r(55, "b2", Some("B2")),
            r(71, "g2", Some("B7")),
            r(200, "c-again", Some("B200")),
            r(201, "c", Some("NEW")),
        ]
    );

    // across a restart: the old key's value is read from the table the previous run committed
    drop(sink);
    let mut again = DeltaSink::upsert("t1", config.clone(), vec!["id".into()]).unwrap();
    assert_eq!(again.open(key_changes(&[]).schema()).await.unwrap(), Some(checkpoint(epoch, epoch as i64)));
    commit(&mut again, &mut epoch, &[(500, Some(71), Some("g2"), None, "u", BIG)]).await;
    let rows = id_name_big(&config).await;
    assert!(rows.contains(&r(500, "g2", Some("B7"))) && !rows.iter().any(|row| row.0 == 71), "{rows:?}");

    // after a truncate, nothing is carried from the emptied table
    again
        .write(key_changes(&[(0, None, None, None, "t", &[]), (8, None, Some("h"), Some("B8"), "c", &[])]))
        .await
        .unwrap();
    again.write(key_changes(&[(80, Some(8), Some("h"), None, "u", BIG)])).await.unwrap();
    epoch += 1;
    again.commit(&checkpoint(epoch, epoch as i64)).await.unwrap();
    assert_eq!(id_name_big(&config).await, vec![r(80, "h", Some("B8"))]);
    let cols = query_table(&config, "SELECT * FROM t LIMIT 1").await.unwrap()[0].schema();
    assert!(cols.field_with_name(&rtsync_core::before_key_column("id")).is_err(), "no old-key column in the table");
}

fn is_fenced(result: SyncResult<CommitStats>) -> bool {
    matches!(result, Err(e) if e.kind() == ErrorKind::Fenced)
}

/// A zombie copy of a task (its in-memory epoch behind the table) is fenced whether its
/// snapshot predates the twin's commit or was refreshed after it (the reload hole), and the
/// table keeps each epoch once.
#[tokio::test]
async fn a_zombie_copy_is_fenced_even_with_a_fresh_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LakehouseSinkConfig::new(dir.path().to_str().unwrap(), "public", "fence");
    config.maintenance = false;
    let mut zombie = DeltaSink::new("t1", config.clone()).unwrap().with_checkpoint_interval(3);
    zombie.open(schema()).await.unwrap();
    for epoch in 1..=2 {
        zombie.write(batch(&[epoch as i64])).await.unwrap();
        zombie.commit(&checkpoint(epoch, epoch as i64)).await.unwrap();
    }
    // The failover copy resumes from the table and commits epochs 3 and 4 (a log checkpoint
    // lands in between: the zombie's next refresh starts from it).
    let mut live = DeltaSink::new("t1", config.clone()).unwrap();
    assert_eq!(live.open(schema()).await.unwrap(), Some(checkpoint(2, 2)));
    for epoch in 3..=4 {
        live.write(batch(&[epoch as i64 * 10])).await.unwrap();
        live.commit(&checkpoint(epoch, epoch as i64)).await.unwrap();
    }
    // The zombie's epoch 3 is refused; its refreshed snapshot now holds the twin's epochs
    // (the reload hole: a conflict check against commits after the snapshot sees nothing),
    // and its epochs 4 and 9 are refused all the same.
    for epoch in [3, 4, 9] {
        zombie.write(batch(&[100 + epoch as i64])).await.unwrap();
        assert!(is_fenced(zombie.commit(&checkpoint(epoch, 99)).await), "epoch {epoch} must be fenced");
    }
    assert_eq!(zombie.table.as_ref().unwrap().version(), live.table.as_ref().unwrap().version());
    live.write(batch(&[50])).await.unwrap();
    live.commit(&checkpoint(5, 5)).await.unwrap();
    assert_eq!(ids(&config).await, vec![1, 2, 30, 40, 50]);
}

/// The position of an idle task stays findable after log cleanup deleted the JSON commit of
/// its last epoch: the maintenance commits that came after it carry it.
#[tokio::test]
async fn the_resume_position_survives_log_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LakehouseSinkConfig::new(dir.path().to_str().unwrap(), "public", "idle");
    config.maintenance = false;
    config.log_retention = Some(Duration::ZERO);
    config.vacuum_retention = Duration::ZERO;
    let mut sink = DeltaSink::new("t1", config.clone()).unwrap().with_checkpoint_interval(3);
    sink.open(schema()).await.unwrap();
    for epoch in 1..=3 {
        sink.write(batch(&[epoch as i64])).await.unwrap();
        sink.commit(&checkpoint(epoch, epoch as i64)).await.unwrap();
    }
    drop(sink);
    // Versions 0 (create) to 3 (epoch 3), then only maintenance commits: compaction (4),
    // vacuum start and end (5, 6). The log checkpoint at 5 lets log cleanup (retention 0)
    // delete the JSON commits before it, epoch 3's among them.
    let report = maintenance::optimize(&config).await.unwrap();
    assert_eq!(report.files_removed, 3);
    let deleted = maintenance::vacuum(&config, None, false).await.unwrap();
    assert_eq!(deleted.len(), 3, "{deleted:?}");
    let log = dir.path().join("public/idle/_delta_log");
    assert!(!log.join(format!("{:020}.json", 3)).exists(), "log cleanup removed epoch 3's commit");
    let info = maintenance::table_info(&config).await.unwrap();
    assert!(info.last_checkpoint_version.unwrap() >= 3, "{info:?}");
    // the compaction's own commit went with the log cleanup; the vacuum's are still there
    assert!(info.last_vacuum_ms.is_some(), "{info:?}");
    assert_eq!(info.active_files, 1);

    let mut reopened = DeltaSink::new("t1", config.clone()).unwrap();
    assert_eq!(reopened.open(schema()).await.unwrap(), Some(checkpoint(3, 3)));
    reopened.write(batch(&[4])).await.unwrap();
    reopened.commit(&checkpoint(4, 4)).await.unwrap();
    assert_eq!(ids(&config).await, vec![1, 2, 3, 4]);
}

/// The task's background maintenance compacts small files with `dataChange = false` while
/// the task commits, vacuums the replaced files, and readers see every row once throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_compaction_keeps_files_bounded_and_rows_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LakehouseSinkConfig::new(dir.path().to_str().unwrap(), "public", "compact");
    config.compact_min_files = 4;
    config.compact_interval = Duration::from_millis(200);
    // (vacuum with no retention would delete files a reader of an older snapshot still reads)
    config.vacuum_retention = Duration::from_secs(3600);
    let mut sink = DeltaSink::new("t1", config.clone()).unwrap();
    sink.open(schema()).await.unwrap();
    let metrics = sink.maintenance_metrics().expect("maintenance is on by default");
    let mut epoch = 0;
    let mut next_id = 0i64;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while metrics.compactions.load(std::sync::atomic::Ordering::Relaxed) < 3 || epoch < 40 {
        assert!(std::time::Instant::now() < deadline, "no compaction within 120 s: {:?}", metrics.snapshot());
        sink.write(batch(&[next_id, next_id + 1])).await.unwrap();
        next_id += 2;
        epoch += 1;
        sink.commit(&checkpoint(epoch, next_id)).await.unwrap();
        // a reader at any moment sees each committed row once
        let seen = ids(&config).await;
        assert_eq!(seen, (0..next_id).collect::<Vec<_>>(), "after epoch {epoch}");
    }
    let m = metrics.snapshot();
    assert!(m.files_compacted >= 4, "{m:?}");
    let info = maintenance::table_info(&config).await.unwrap();
    assert!(info.active_files < epoch, "{info:?} after {epoch} commits");
    assert!(info.last_compaction_ms.is_some(), "{info:?}");
    assert!(maintenance::table_metrics().iter().any(|(location, _)| location == &config.table_location()));

    // every OPTIMIZE commit adds and removes files with dataChange = false
    let log = dir.path().join("public/compact/_delta_log");
    let mut optimize_commits = 0;
    for entry in std::fs::read_dir(&log).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            if text.contains("\"operation\":\"OPTIMIZE\"") {
                optimize_commits += 1;
                for line in text.lines() {
                    let action: serde_json::Value = serde_json::from_str(line).unwrap();
                    for kind in ["add", "remove"] {
                        if let Some(a) = action.get(kind) {
                            assert_eq!(a["dataChange"], false, "{line}");
                        }
                    }
                    if let Some(info) = action.get("commitInfo") {
                        assert_eq!(info[COMMIT_INFO_KEY]["task"], "t1", "the checkpoint rides along: {line}");
                    }
                }
            }
        }
    }
    assert!(optimize_commits >= 1);
    // the task resumes where it was, the data is intact
    drop(sink);
    let mut reopened = DeltaSink::new("t1", config.clone()).unwrap();
    assert_eq!(reopened.open(schema()).await.unwrap(), Some(checkpoint(epoch, next_id)));
    assert_eq!(ids(&config).await, (0..next_id).collect::<Vec<_>>());
}

/// A MERGE of the task that loses to a compaction is tried again on the new snapshot.
#[tokio::test]
async fn an_upsert_commit_after_a_compaction_applies_once_merge_on_read() {
    an_upsert_commit_after_a_compaction_applies_once(ApplyMode::MergeOnRead).await;
}

#[tokio::test]
async fn an_upsert_commit_after_a_compaction_applies_once_copy_on_write() {
    an_upsert_commit_after_a_compaction_applies_once(ApplyMode::CopyOnWrite).await;
}

async fn an_upsert_commit_after_a_compaction_applies_once(apply: ApplyMode) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LakehouseSinkConfig::new(dir.path().to_str().unwrap(), "public", "upsert_compact");
    config.apply = apply;
    config.maintenance = false;
    let mut sink = DeltaSink::upsert("t1", config.clone(), vec!["id".into()]).unwrap();
    sink.open(change_schema(false)).await.unwrap();
    let mut epoch = 0;
    for i in 0..5i64 {
        sink.write(changes(&[(i, Some("a"), "c", false)])).await.unwrap();
        epoch += 1;
        sink.commit(&checkpoint(epoch, epoch as i64)).await.unwrap();
    }
    // a compaction commits between the sink's snapshot and its next MERGE
    maintenance::optimize(&config).await.unwrap();
    sink.write(changes(&[(2, Some("b"), "u", false), (3, None, "d", false)])).await.unwrap();
    epoch += 1;
    sink.commit(&checkpoint(epoch, epoch as i64)).await.unwrap();
    let rows = id_names(&config).await;
    assert_eq!(rows, vec![(0, Some("a".into())), (1, Some("a".into())), (2, Some("b".into())), (4, Some("a".into()))]);
}

#[test]
fn secret_storage_options_never_print() {
    let config = LakehouseSinkConfig::new("s3://bucket/lake", "public", "t").with_storage_options([
        ("AWS_ACCESS_KEY_ID".to_string(), "AKIDEXAMPLE".to_string()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), "wJalrXUtnFEMI".to_string()),
        ("AZURE_STORAGE_ACCOUNT_KEY".to_string(), "c2VjcmV0".to_string()),
    ]);
    let shown = format!("{config:?}");
    assert!(!shown.contains("wJalrXUtnFEMI") && !shown.contains("c2VjcmV0"), "{shown}");
    assert!(shown.contains("AKIDEXAMPLE") && shown.contains("***"), "{shown}");
}

#[test]
fn object_store_roots_are_accepted_and_unknown_schemes_named() {
    for root in ["s3://b/lake", "s3a://b/lake", "az://c/lake", "abfss://c@acct.dfs.core.windows.net/lake", "gs://b/l"] {
        let config = LakehouseSinkConfig::new(root, "public", "t");
        config.validate().unwrap();
        assert!(config.table_url().unwrap().as_str().trim_end_matches('/').ends_with("/public/t"), "{root}");
    }
    let err = LakehouseSinkConfig::new("ftp://host/lake", "public", "t").validate().unwrap_err();
    assert!(err.to_string().contains("ftp://"), "{err}");
}

/// The key index is a hint validated against the snapshot: a key deleted (its entry stale) and
/// inserted again has one row; rows another writer appended are learnt by the catch-up; a lost
/// index is rebuilt from the table.
#[tokio::test]
async fn merge_on_read_index_catches_up_and_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LakehouseSinkConfig::new(dir.path().to_str().unwrap(), "public", "index");
    config.maintenance = false;
    config.index_dir = Some(dir.path().join("idx").to_str().unwrap().to_string());
    let mut sink = DeltaSink::upsert("t1", config.clone(), vec!["id".into()]).unwrap();
    sink.open(change_schema(false)).await.unwrap();
    assert_eq!(sink.apply_mode(), Some(ApplyMode::MergeOnRead));
    let index = sink.key_index_path().unwrap().to_path_buf();
    assert!(index.starts_with(dir.path().join("idx")), "{index:?}");
    let snapshot: Vec<(i64, Option<&str>, &str, bool)> = (0..100).map(|i| (i, Some("s"), "r", false)).collect();
    sink.write(changes(&snapshot)).await.unwrap();
    sink.commit(&checkpoint(1, 1)).await.unwrap();
    // delete 5, then insert it again and update it: the stale entry of the deleted row is
    // never taken for a live one
    sink.write(changes(&[(5, None, "d", false), (6, Some("u6"), "u", false)])).await.unwrap();
    sink.commit(&checkpoint(2, 2)).await.unwrap();
    sink.write(changes(&[(5, Some("again"), "c", false)])).await.unwrap();
    sink.commit(&checkpoint(3, 3)).await.unwrap();
    sink.write(changes(&[(5, None, "u", true), (7, None, "d", false)])).await.unwrap();
    sink.commit(&checkpoint(4, 4)).await.unwrap();

    // another writer appends rows: the next commit's catch-up learns them
    let table = read::load_table(&config, None).await.unwrap();
    let outside = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("name", DataType::Utf8, true)])),
        vec![Arc::new(Int64Array::from(vec![1000, 1001])), Arc::new(StringArray::from(vec!["o", "o"]))],
    )
    .unwrap();
    table.write(vec![outside]).await.unwrap();
    sink.write(changes(&[(1000, Some("o2"), "u", false), (1001, None, "d", false)])).await.unwrap();
    sink.commit(&checkpoint(5, 5)).await.unwrap();

    let mut want: Vec<(i64, Option<String>)> = (0..100).map(|i| (i, Some("s".to_string()))).collect();
    want[5].1 = Some("again".into());
    want[6].1 = Some("u6".into());
    want.remove(7);
    want.push((1000, Some("o2".into())));
    assert_eq!(id_names(&config).await, want);

    // a task that moved to another machine: no index, rebuilt from the table
    drop(sink);
    std::fs::remove_file(&index).unwrap();
    let mut sink = DeltaSink::upsert("t1", config.clone(), vec!["id".into()]).unwrap();
    assert_eq!(sink.open(change_schema(false)).await.unwrap(), Some(checkpoint(5, 5)));
    assert!(index.exists(), "rebuilt at open");
    sink.write(changes(&[(5, Some("five"), "u", false), (1000, None, "d", false), (8, None, "u", true)]))
        .await
        .unwrap();
    sink.commit(&checkpoint(6, 6)).await.unwrap();
    want[5].1 = Some("five".into());
    want.pop();
    assert_eq!(id_names(&config).await, want, "one row per key after the rebuild, TOAST value of 8 kept");
}

#[tokio::test]
async fn a_query_tells_a_vacuumed_file_from_other_failures() {
    let dir = tempfile::tempdir().unwrap();
    let config = LakehouseSinkConfig::new(dir.path().to_str().unwrap(), "public", "orders");
    let mut sink = DeltaSink::new("t1", config.clone()).unwrap();
    sink.open(schema()).await.unwrap();
    sink.write(batch(&[1, 2, 3])).await.unwrap();
    sink.commit(&checkpoint(1, 3)).await.unwrap();

    let bad_sql = query_table(&config, "SELECT no_such_column FROM t").await.unwrap_err();
    assert!(!read::lost_a_file(&bad_sql), "{bad_sql}");

    // The newest version names a file the store lost: the query reads again, then fails
    // with the store's NotFound (never an empty answer).
    let parquet: Vec<_> =
        walk(dir.path()).into_iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")).collect();
    assert_eq!(parquet.len(), 1);
    std::fs::remove_file(&parquet[0]).unwrap();
    let lost = query_table(&config, "SELECT id FROM t").await.unwrap_err();
    assert!(read::lost_a_file(&lost), "{lost:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}
