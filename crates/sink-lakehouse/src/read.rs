//! Reading a table back with SQL (DataFusion): for `demo`, `task preview` checks and tests.

use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::prelude::SessionContext;
use rtsync_core::{ErrorKind, SyncError, SyncResult};

use crate::{LakehouseSinkConfig, classify};

/// Runs `sql` against the table registered as `t`, e.g. `SELECT count(*) FROM t`.
pub async fn query_table(config: &LakehouseSinkConfig, sql: &str) -> SyncResult<Vec<RecordBatch>> {
    let location = config.table_location();
    let url = config.table_url()?;
    let mut table = deltalake::DeltaTableBuilder::from_url(url)
        .map_err(|e| classify(e, &format!("opening table {location}")))?
        .with_storage_options(config.storage_options.clone())
        .build()
        .map_err(|e| classify(e, &format!("opening table {location}")))?;
    table.load().await.map_err(|e| classify(e, &format!("loading table {location}")))?;
    let ctx = SessionContext::new();
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| classify(e, &format!("registering the storage of {location}")))?;
    let provider = table
        .table_provider()
        .await
        .map_err(|e| SyncError::with_source(ErrorKind::Sink, format!("reading table {location}"), e))?;
    let query_err = |e| SyncError::with_source(ErrorKind::Config, format!("query {sql:?} on {location} failed"), e);
    ctx.register_table("t", provider).map_err(query_err)?;
    let frame = ctx.sql(sql).await.map_err(query_err)?;
    frame.collect().await.map_err(query_err)
}
