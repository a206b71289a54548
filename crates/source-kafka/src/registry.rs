//! A Confluent Schema Registry client: the REST API the serializers of Confluent, Karapace,
//! Redpanda and Apicurio (in its Confluent mode) all serve.
//!
//! Only reads: `GET /schemas/ids/{id}` (what a message header names), `GET
//! /subjects/{subject}/versions` and `GET /subjects/{subject}/versions/{version|latest}` (what
//! a task's columns default to, what `meta detail` shows). A schema id never changes its
//! schema, so each id is fetched once per process and kept in memory; subject look-ups are not
//! cached (a new version must be seen).
//!
//! **Security.** HTTPS goes through rustls with the ring provider (as every other connector of
//! rtsync) and the system's roots, plus the PEM file named by `ssl_ca_location`. Basic
//! authentication takes Confluent's `basic.auth.user.info` form, `USER:PASSWORD`; it is a
//! secret: never printed, and held encrypted by the daemon's catalog.
//!
//! **Errors.** An unreachable registry, a 5xx and a timeout are transient; 401/403 name the
//! credentials; an unknown id or subject (404) is definite and names the subject or id.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rtsync_core::kafka::{RegisteredSchema, SchemaLookup, SchemaReference, SchemaType};
use rtsync_core::{ErrorKind, SyncError, SyncResult};
use serde::{Deserialize, Serialize};

/// How long one registry request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Where the registry is and how to log in.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistryConfig {
    /// `http://host:8081` or `https://…`; a path prefix is kept.
    pub url: String,
    /// `USER:PASSWORD` (Confluent's `basic.auth.user.info`). A secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth_user_info: Option<String>,
    /// A PEM file of certificate authorities to trust besides the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_ca_location: Option<String>,
}

impl fmt::Debug for SchemaRegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaRegistryConfig")
            .field("url", &self.url)
            .field("basic_auth_user_info", &self.basic_auth_user_info.as_ref().map(|_| "***"))
            .field("ssl_ca_location", &self.ssl_ca_location)
            .finish()
    }
}

impl SchemaRegistryConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), ..Self::default() }
    }

    /// Names the first offending field.
    pub fn validate(&self) -> SyncResult<()> {
        let url = self.url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(SyncError::config(format!(
                "source.schema_registry.url: {url:?} is not an http:// or https:// URL"
            )));
        }
        if let Some(info) = &self.basic_auth_user_info
            && !info.contains(':')
        {
            return Err(SyncError::config(
                "source.schema_registry.basic_auth_user_info: expected USER:PASSWORD".to_string(),
            ));
        }
        Ok(())
    }
}

/// The subject a topic's value schemas are registered under by the default
/// `TopicNameStrategy`: `<topic>-value` (`<topic>-key` for keys).
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// The subject of a topic's key schemas under `TopicNameStrategy`.
pub fn key_subject(topic: &str) -> String {
    format!("{topic}-key")
}

/// A registry client with its cache of schemas by id. Cheap to share (`Arc`).
pub struct SchemaRegistry {
    config: SchemaRegistryConfig,
    client: reqwest::Client,
    by_id: Mutex<HashMap<u32, Arc<RegisteredSchema>>>,
}

impl fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaRegistry").field("config", &self.config).finish_non_exhaustive()
    }
}

/// The JSON the registry answers with (both `/schemas/ids/{id}` and `/subjects/…/versions/…`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaAnswer {
    schema: String,
    #[serde(default)]
    schema_type: Option<String>,
    #[serde(default)]
    id: Option<u32>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    version: Option<i32>,
    /// Schemas this one imports: `{name, subject, version}` each.
    #[serde(default)]
    references: Vec<ReferenceAnswer>,
}

/// One schema reference as the registry lists it.
#[derive(Deserialize)]
struct ReferenceAnswer {
    name: String,
    subject: String,
    version: i32,
}

/// More references than any real schema has: a registry answering in a loop.
const MAX_REFERENCES: usize = 256;

impl SchemaRegistry {
    pub fn new(config: SchemaRegistryConfig) -> SyncResult<Self> {
        config.validate()?;
        let client = http_client(&config)?;
        Ok(Self { config, client, by_id: Mutex::new(HashMap::new()) })
    }

    pub fn config(&self) -> &SchemaRegistryConfig {
        &self.config
    }

    /// The schema with global id `id` (`GET /schemas/ids/{id}`), from the cache after the
    /// first time.
    pub async fn schema(&self, id: u32) -> SyncResult<Arc<RegisteredSchema>> {
        if let Some(found) = self.cached(id) {
            return Ok(found);
        }
        let found = Arc::new(fetch_by_id(&self.client, &self.config, id).await?);
        self.remember(found.clone());
        Ok(found)
    }

    /// Version `version` of `subject`, or its latest with `None`; `Ok(None)` when the
    /// registry has no such subject or version.
    pub async fn subject_version(
        &self,
        subject: &str,
        version: Option<i32>,
    ) -> SyncResult<Option<Arc<RegisteredSchema>>> {
        let v = version.map_or_else(|| "latest".to_string(), |v| v.to_string());
        let Some(body) = get_opt(
            &self.client,
            &self.config,
            &["subjects", subject, "versions", &v],
            &format!("subject {subject:?}"),
        )
        .await?
        else {
            return Ok(None);
        };
        let mut answer: SchemaAnswer = parse(&body, &self.config)?;
        let id = answer.id.ok_or_else(|| {
            SyncError::source_err(format!("the schema registry at {} answered without a schema id", self.config.url))
        })?;
        let references = resolve_references(&self.client, &self.config, std::mem::take(&mut answer.references)).await?;
        let schema = Arc::new(registered(answer, id, references, &self.config)?);
        self.remember(schema.clone());
        Ok(Some(schema))
    }

    /// The versions registered under `subject`, oldest first.
    pub async fn versions(&self, subject: &str) -> SyncResult<Vec<i32>> {
        let body = get(&self.client, &self.config, &["subjects", subject, "versions"], &format!("subject {subject:?}"))
            .await?;
        serde_json::from_slice(&body).map_err(|e| {
            SyncError::with_source(
                ErrorKind::Source,
                format!("the schema registry at {} answered with something other than a version list", self.config.url),
                e,
            )
        })
    }

    fn cached(&self, id: u32) -> Option<Arc<RegisteredSchema>> {
        self.by_id.lock().ok().and_then(|m| m.get(&id).cloned())
    }

    fn remember(&self, schema: Arc<RegisteredSchema>) {
        if let Ok(mut m) = self.by_id.lock() {
            m.entry(schema.id).or_insert(schema);
        }
    }
}

impl SchemaLookup for SchemaRegistry {
    /// A cached schema at once; a new id is fetched on a short-lived thread of its own (with
    /// its own client and runtime), so this may be called from inside or outside a Tokio
    /// runtime. It blocks the caller for one request, once per id.
    fn schema_by_id(&self, id: u32) -> SyncResult<Arc<RegisteredSchema>> {
        if let Some(found) = self.cached(id) {
            return Ok(found);
        }
        let config = self.config.clone();
        let fetched = std::thread::scope(|scope| {
            scope
                .spawn(move || -> SyncResult<RegisteredSchema> {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
                        SyncError::with_source(ErrorKind::Internal, "starting the schema registry look-up", e)
                    })?;
                    let client = http_client(&config)?;
                    runtime.block_on(fetch_by_id(&client, &config, id))
                })
                .join()
                .map_err(|_| SyncError::internal("the schema registry look-up thread panicked"))?
        })?;
        let found = Arc::new(fetched);
        self.remember(found.clone());
        Ok(found)
    }
}

fn http_client(config: &SchemaRegistryConfig) -> SyncResult<reqwest::Client> {
    let mut builder = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).connect_timeout(REQUEST_TIMEOUT);
    if let Some(path) = &config.ssl_ca_location {
        let pem = std::fs::read(path).map_err(|e| {
            SyncError::with_source(
                ErrorKind::Config,
                format!("source.schema_registry.ssl_ca_location: cannot read {path:?}"),
                e,
            )
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            SyncError::with_source(
                ErrorKind::Config,
                format!("source.schema_registry.ssl_ca_location: {path:?} holds no PEM certificate"),
                e,
            )
        })?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| SyncError::with_source(ErrorKind::Config, "building the schema registry client", e))
}

async fn fetch_by_id(client: &reqwest::Client, config: &SchemaRegistryConfig, id: u32) -> SyncResult<RegisteredSchema> {
    let body = get(client, config, &["schemas", "ids", &id.to_string()], &format!("schema id {id}")).await?;
    let mut answer: SchemaAnswer = parse(&body, config)?;
    let references = resolve_references(client, config, std::mem::take(&mut answer.references)).await?;
    registered(answer, id, references, config)
}

/// The texts of the schemas `references` name (`GET /subjects/{subject}/versions/{version}`),
/// and of the ones they reference in turn, each name once.
async fn resolve_references(
    client: &reqwest::Client,
    config: &SchemaRegistryConfig,
    references: Vec<ReferenceAnswer>,
) -> SyncResult<Vec<SchemaReference>> {
    let mut resolved: Vec<SchemaReference> = Vec::new();
    let mut queue = references;
    while let Some(reference) = queue.pop() {
        if resolved.iter().any(|r| r.name == reference.name) {
            continue;
        }
        if resolved.len() >= MAX_REFERENCES {
            return Err(SyncError::source_err(format!(
                "the schema registry at {} gave more than {MAX_REFERENCES} schema references",
                config.url
            )));
        }
        let what = format!(
            "subject {:?} version {} (referenced as {:?})",
            reference.subject, reference.version, reference.name
        );
        let version = reference.version.to_string();
        let body = get(client, config, &["subjects", &reference.subject, "versions", &version], &what).await?;
        let answer: SchemaAnswer = parse(&body, config)?;
        queue.extend(answer.references);
        resolved.push(SchemaReference { name: reference.name, text: answer.schema });
    }
    Ok(resolved)
}

fn registered(
    answer: SchemaAnswer,
    id: u32,
    references: Vec<SchemaReference>,
    config: &SchemaRegistryConfig,
) -> SyncResult<RegisteredSchema> {
    let schema_type = SchemaType::from_registry(answer.schema_type.as_deref())
        .map_err(|e| SyncError::source_err(format!("schema id {id} at {}: {e}", config.url)))?;
    Ok(RegisteredSchema {
        id,
        schema_type,
        text: answer.schema,
        subject: answer.subject,
        version: answer.version,
        references,
    })
}

fn parse(body: &[u8], config: &SchemaRegistryConfig) -> SyncResult<SchemaAnswer> {
    serde_json::from_slice(body).map_err(|e| {
        SyncError::with_source(
            ErrorKind::Source,
            format!("the schema registry at {} answered with something other than a schema", config.url),
            e,
        )
    })
}

/// `GET <url>/<segments…>` (each segment percent-encoded); the body of a 2xx answer, a
/// definite error naming `what` on 404.
async fn get(
    client: &reqwest::Client,
    config: &SchemaRegistryConfig,
    segments: &[&str],
    what: &str,
) -> SyncResult<Vec<u8>> {
    get_opt(client, config, segments, what)
        .await?
        .ok_or_else(|| SyncError::source_err(format!("the schema registry at {} has no {what}", config.url)))
}

/// [`get`], with `Ok(None)` on 404.
async fn get_opt(
    client: &reqwest::Client,
    config: &SchemaRegistryConfig,
    segments: &[&str],
    what: &str,
) -> SyncResult<Option<Vec<u8>>> {
    let mut url = reqwest::Url::parse(config.url.trim()).map_err(|e| {
        SyncError::with_source(ErrorKind::Config, format!("source.schema_registry.url {:?}", config.url), e)
    })?;
    url.path_segments_mut()
        .map_err(|()| SyncError::config(format!("source.schema_registry.url {:?} cannot take a path", config.url)))?
        .pop_if_empty()
        .extend(segments);
    let mut request = client.get(url).header("Accept", "application/vnd.schemaregistry.v1+json, application/json");
    if let Some(info) = &config.basic_auth_user_info {
        let (user, password) = info.split_once(':').unwrap_or((info.as_str(), ""));
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.map_err(|e| {
        SyncError::with_source(
            ErrorKind::Transient,
            format!("cannot reach the schema registry at {}: check schema_registry.url and the network", config.url),
            e,
        )
    })?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| {
        SyncError::with_source(
            ErrorKind::Transient,
            format!("reading the answer of the schema registry at {}", config.url),
            e,
        )
    })?;
    if status.is_success() {
        return Ok(Some(body.to_vec()));
    }
    if status.as_u16() == 404 {
        return Ok(None);
    }
    // The registry's error body: {"error_code": 40403, "message": "Schema not found"}.
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
    let at = &config.url;
    Err(match status.as_u16() {
        401 | 403 => SyncError::source_err(format!(
            "the schema registry at {at} refused the credentials ({status}): check schema_registry.basic_auth_user_info (USER:PASSWORD)"
        )),
        code if code >= 500 || code == 429 => {
            SyncError::transient(format!("the schema registry at {at} answered {status} for {what}: {message}"))
        }
        _ => SyncError::source_err(format!("the schema registry at {at} answered {status} for {what}: {message}")),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_never_prints_and_bad_settings_are_named() {
        let mut config = SchemaRegistryConfig::new("https://registry:8081");
        config.basic_auth_user_info = Some("app:hunter2".into());
        assert!(!format!("{config:?}").contains("hunter2"));
        config.validate().unwrap();
        config.basic_auth_user_info = Some("nocolon".into());
        assert!(config.validate().unwrap_err().to_string().contains("basic_auth_user_info"));
        assert!(SchemaRegistryConfig::new("registry:8081").validate().unwrap_err().to_string().contains("url"));
        assert_eq!(value_subject("orders"), "orders-value");
        assert_eq!(key_subject("orders"), "orders-key");
    }
}
