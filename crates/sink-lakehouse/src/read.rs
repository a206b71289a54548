//! Reading a table back with SQL (DataFusion): for `demo`, `task preview` checks and tests.

use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Schema};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::prelude::SessionContext;
use rtsync_core::{ErrorKind, SyncError, SyncResult};

use crate::{LakehouseSinkConfig, classify};

/// Reads of a version whose files a vacuum deleted under them, before the query gives up.
const STALE_VERSION_ATTEMPTS: u32 = 5;

/// Runs `sql` against the table registered as `t`, e.g. `SELECT count(*) FROM t`.
///
/// A table whose writer vacuums with a retention shorter than the read can delete a file of the
/// version the query loaded before the query reaches it; the query then reads the newest
/// version again (up to `STALE_VERSION_ATTEMPTS` times) rather than fail.
pub async fn query_table(config: &LakehouseSinkConfig, sql: &str) -> SyncResult<Vec<RecordBatch>> {
    let mut attempt = 1;
    loop {
        match query_once(config, sql).await {
            Err(e) if attempt < STALE_VERSION_ATTEMPTS && lost_a_file(&e) => {
                tracing::debug!(error = %e, attempt, "a file of the loaded version was vacuumed; reading the newest version");
                attempt += 1;
            }
            done => return done,
        }
    }
}

/// Whether `e` comes from a file the store no longer has: the store's `NotFound`, or its text
/// where the Parquet reader flattened it into a message ("Failed to fetch metadata for file
/// …: Object Store error: Object at location … not found").
pub(crate) fn lost_a_file(e: &SyncError) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if matches!(
            err.downcast_ref::<deltalake::ObjectStoreError>(),
            Some(deltalake::ObjectStoreError::NotFound { .. })
        ) {
            return true;
        }
        let text = err.to_string();
        if text.contains("Object at location ") && text.contains(" not found") {
            return true;
        }
        next = err.source();
    }
    false
}

async fn query_once(config: &LakehouseSinkConfig, sql: &str) -> SyncResult<Vec<RecordBatch>> {
    let location = config.table_location();
    let table = load_table(config, None).await?;
    let (ctx, provider) = session_for(&table, &location).await?;
    let query_err = |e| SyncError::with_source(ErrorKind::Config, format!("query {sql:?} on {location} failed"), e);
    ctx.register_table("t", provider).map_err(query_err)?;
    let frame = ctx.sql(sql).await.map_err(query_err)?;
    let batches = frame.collect().await.map_err(query_err)?;
    batches.iter().map(without_view_types).collect()
}

/// The table at `config`, at `version` or the latest.
pub(crate) async fn load_table(config: &LakehouseSinkConfig, version: Option<u64>) -> SyncResult<DeltaTable> {
    let location = config.table_location();
    let mut builder = deltalake::DeltaTableBuilder::from_url(config.table_url()?)
        .map_err(|e| classify(e, &format!("opening table {location}")))?
        .with_storage_options(config.storage_options.clone());
    if let Some(v) = version {
        builder = builder.with_version(v);
    }
    builder.load().await.map_err(|e| classify(e, &format!("loading table {location}")))
}

/// A DataFusion session with the storage of `table` registered, and the table as a provider
/// (its scan applies deletion vectors).
pub(crate) async fn session_for(
    table: &DeltaTable,
    location: &str,
) -> SyncResult<(SessionContext, Arc<dyn TableProvider>)> {
    let ctx = SessionContext::new();
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| classify(e, &format!("registering the storage of {location}")))?;
    let provider = table
        .table_provider()
        .await
        .map_err(|e| SyncError::with_source(ErrorKind::Sink, format!("reading table {location}"), e))?;
    Ok((ctx, provider))
}

/// DataFusion reads strings and binaries as view types; callers get the plain ones the
/// writer uses, so a value read back has the type it was written with.
fn without_view_types(batch: &RecordBatch) -> SyncResult<RecordBatch> {
    let schema = batch.schema();
    if !schema.fields().iter().any(|f| matches!(f.data_type(), DataType::Utf8View | DataType::BinaryView)) {
        return Ok(batch.clone());
    }
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        let plain = match f.data_type() {
            DataType::Utf8View => DataType::Utf8,
            DataType::BinaryView => DataType::Binary,
            other => other.clone(),
        };
        columns.push(if &plain == f.data_type() { c.clone() } else { cast(c, &plain)? });
        fields.push(f.as_ref().clone().with_data_type(plain));
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}
