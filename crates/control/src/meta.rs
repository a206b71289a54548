//! Metadata browsing (`meta namespaces|objects|detail`), the seed's `list_namespaces`,
//! `list_metadata_objects` and `get_metadata_detail`, answered by each data source's
//! connector (see [`crate::connectors`]):
//!
//! - **Kafka** has one namespace; its objects are the topics, with their partition counts and
//!   watermarks. A topic's detail samples the newest messages (under a throw-away consumer
//!   group, committing nothing) and infers the fields of their JSON values: each field's
//!   JSONPath, a guessed type, how many sampled messages had it, and a ready `--column`.
//! - **PostgreSQL / MySQL** (and their Aurora and PolarDB flavours): namespaces are the
//!   schemas (MySQL: databases), objects their tables with primary key and row estimate, and
//!   a table's detail lists each column's source type next to the Delta type it becomes, read
//!   with the connector's own catalog queries (no slot, no binlog connection).
//! - **Lakehouse**: namespaces are the schemas under the root, objects the Delta tables in
//!   them, and a table's columns come from its Delta schema.

use crate::connectors;
use crate::error::Result;
use crate::model::{DataSource, MetaDetail, MetaObject, Namespace};

pub const DEFAULT_SAMPLE: usize = 100;

pub async fn namespaces(ds: &DataSource) -> Result<Vec<Namespace>> {
    connectors::of(ds.ds_type)?.namespaces(ds).await
}

pub async fn objects(ds: &DataSource, namespace: &str) -> Result<Vec<MetaObject>> {
    connectors::of(ds.ds_type)?.objects(ds, namespace).await
}

pub async fn detail(ds: &DataSource, namespace: &str, object: &str, sample: usize) -> Result<MetaDetail> {
    connectors::of(ds.ds_type)?.detail(ds, namespace, object, sample).await
}
