//! The SQL Server source's configuration: the server, the table, and how to read it.

use std::fmt;

use rtsync_core::SyncError;
use serde::{Deserialize, Serialize};
use tiberius::{AuthMethod, Config, EncryptionLevel};

pub const DEFAULT_PORT: u16 = 1433;
pub const DEFAULT_SCHEMA: &str = "dbo";
/// How often the change table is polled when the last poll found nothing.
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 200;
pub const DEFAULT_SNAPSHOT_CHUNK_ROWS: usize = 10_000;
pub const DEFAULT_MAX_BATCH_ROWS: usize = 10_000;
/// How often an idle task commits the advancing max LSN (each advance is a Delta commit).
pub const DEFAULT_IDLE_ADVANCE_SECS: u64 = 300;

/// `[source]` of a `type = "sqlserver"` task.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlServerSourceConfig {
    /// `mssql://user:password@host:1433/database`, or an ADO.NET connection string
    /// (`Server=tcp:host,1433;Database=db;User Id=u;Password=p;Encrypt=true`).
    pub url: String,
    /// Override the URL's user and password (so the password can be kept as a secret).
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default = "default_schema")]
    pub schema: String,
    pub table: String,
    /// `true`/`strict` (TLS required), `false` (TLS for the login only, as SQL Server's own
    /// drivers do), `off` (no TLS at all). Overrides the URL's `encrypt`.
    #[serde(default)]
    pub encrypt: Option<String>,
    /// Accept any server certificate (self-signed test servers). Overrides the URL's.
    #[serde(default, rename = "trustServerCertificate", alias = "trust_server_certificate")]
    pub trust_server_certificate: Option<bool>,
    /// An Azure AD access token; replaces the user and password.
    #[serde(default)]
    pub aad_token: Option<String>,
    /// The capture instance to read; default: the table's newest one.
    #[serde(default)]
    pub capture_instance: Option<String>,
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    #[serde(default = "default_snapshot_chunk_rows")]
    pub snapshot_chunk_rows: usize,
    #[serde(default = "default_max_batch_rows")]
    pub max_batch_rows: usize,
    #[serde(default = "default_idle_advance_secs")]
    pub idle_advance_secs: u64,
    /// When the cleanup job removed changes the task still needs: copy the table again
    /// instead of stopping with an error.
    #[serde(default)]
    pub resnapshot_on_retention_loss: bool,
}

fn default_schema() -> String {
    DEFAULT_SCHEMA.to_string()
}
fn default_poll_interval_ms() -> u64 {
    DEFAULT_POLL_INTERVAL_MS
}
fn default_snapshot_chunk_rows() -> usize {
    DEFAULT_SNAPSHOT_CHUNK_ROWS
}
fn default_max_batch_rows() -> usize {
    DEFAULT_MAX_BATCH_ROWS
}
fn default_idle_advance_secs() -> u64 {
    DEFAULT_IDLE_ADVANCE_SECS
}

impl fmt::Debug for SqlServerSourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlServerSourceConfig")
            .field("url", &redact(&self.url))
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("schema", &self.schema)
            .field("table", &self.table)
            .field("encrypt", &self.encrypt)
            .field("trust_server_certificate", &self.trust_server_certificate)
            .field("aad_token", &self.aad_token.as_ref().map(|_| "***"))
            .field("capture_instance", &self.capture_instance)
            .field("poll_interval_ms", &self.poll_interval_ms)
            .finish_non_exhaustive()
    }
}

/// The parts of a connection, from either URL form.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionParams {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: String,
    pub encrypt: Encrypt,
    pub trust_server_certificate: bool,
}

impl fmt::Debug for ConnectionParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionParams")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &"***")
            .field("encrypt", &self.encrypt)
            .field("trust_server_certificate", &self.trust_server_certificate)
            .finish()
    }
}

/// TLS, as SQL Server connection strings name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encrypt {
    /// TLS for the whole connection.
    Required,
    /// TLS for the login packet only (the drivers' `Encrypt=false`).
    LoginOnly,
    /// No TLS (servers without a certificate; loopback tests).
    Off,
}

impl Encrypt {
    fn parse(field: &str, value: &str) -> Result<Self, SyncError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "mandatory" | "strict" | "required" => Ok(Encrypt::Required),
            "false" | "no" | "optional" => Ok(Encrypt::LoginOnly),
            "off" | "not_supported" | "disable" => Ok(Encrypt::Off),
            other => Err(SyncError::config(format!(
                "{field}: {other:?} is not an encrypt setting (true/strict, false, or off)"
            ))),
        }
    }
}

/// The URL with its password replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("mssql://").or_else(|| url.strip_prefix("sqlserver://")) {
        let scheme = &url[..url.len() - rest.len()];
        if let Some((userinfo, host)) = rest.rsplit_once('@') {
            let user = userinfo.split(':').next().unwrap_or("");
            return format!("{scheme}{user}:***@{host}");
        }
        return url.to_string();
    }
    url.split(';')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.trim().eq_ignore_ascii_case("password") || k.trim().eq_ignore_ascii_case("pwd") => {
                format!("{k}=***")
            }
            _ => kv.to_string(),
        })
        .collect::<Vec<_>>()
        .join(";")
}

fn percent_decode(field: &str, s: &str) -> Result<String, SyncError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or_else(|| SyncError::config(format!("{field}: a bad %-escape")))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| SyncError::config(format!("{field}: a bad %-escape")))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| SyncError::config(format!("{field}: not UTF-8 after %-decoding")))
}

/// Parses `mssql://user:password@host:port/database?encrypt=…&trustServerCertificate=…`.
fn parse_url(url: &str) -> Result<ConnectionParams, SyncError> {
    let example = "mssql://user:password@host:1433/database";
    let rest = url
        .strip_prefix("mssql://")
        .or_else(|| url.strip_prefix("sqlserver://"))
        .ok_or_else(|| SyncError::config(format!("url: expected {example} or an ADO connection string")))?;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, database) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) =
        authority.rsplit_once('@').ok_or_else(|| SyncError::config(format!("url: no user (expected {example})")))?;
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
            (h, p.parse::<u16>().map_err(|_| SyncError::config(format!("url: port {p:?} is not a number")))?)
        }
        _ => (hostport, DEFAULT_PORT),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(SyncError::config(format!("url: no host (expected {example})")));
    }
    let database = percent_decode("url", database)?;
    if database.is_empty() {
        return Err(SyncError::config(format!(
            "url: no database (expected {example}; CDC works in a user database, never in master)"
        )));
    }
    let mut params = ConnectionParams {
        host: host.to_string(),
        port,
        database,
        user: percent_decode("url", user)?,
        password: percent_decode("url", password)?,
        encrypt: Encrypt::Required,
        trust_server_certificate: false,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
        match k.to_ascii_lowercase().as_str() {
            "encrypt" => params.encrypt = Encrypt::parse("url encrypt", v)?,
            "trustservercertificate" | "trust_server_certificate" => {
                params.trust_server_certificate = parse_bool("url trustServerCertificate", v)?
            }
            other => return Err(SyncError::config(format!("url: unknown parameter {other:?}"))),
        }
    }
    Ok(params)
}

fn parse_bool(field: &str, v: &str) -> Result<bool, SyncError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        other => Err(SyncError::config(format!("{field}: {other:?} is not true or false"))),
    }
}

/// Parses an ADO.NET connection string (`Server=tcp:host,1433;Database=db;User Id=u;…`).
fn parse_ado(s: &str) -> Result<ConnectionParams, SyncError> {
    let mut params = ConnectionParams {
        host: String::new(),
        port: DEFAULT_PORT,
        database: String::new(),
        user: String::new(),
        password: String::new(),
        encrypt: Encrypt::Required,
        trust_server_certificate: false,
    };
    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| SyncError::config(format!("url: {part:?} is not key=value in the connection string")))?;
        let v = v.trim().trim_matches('{').trim_matches('}');
        match k.trim().to_ascii_lowercase().as_str() {
            "server" | "data source" | "address" | "addr" | "network address" => {
                let v = v.strip_prefix("tcp:").unwrap_or(v);
                let (h, p) = match v.split_once(',') {
                    Some((h, p)) => (h, p.trim().parse().map_err(|_| SyncError::config(format!("url: port {p:?}")))?),
                    None => (v, DEFAULT_PORT),
                };
                params.host = h.trim().to_string();
                params.port = p;
            }
            "database" | "initial catalog" => params.database = v.to_string(),
            "user id" | "uid" | "user" => params.user = v.to_string(),
            "password" | "pwd" => params.password = v.to_string(),
            "encrypt" => params.encrypt = Encrypt::parse("url Encrypt", v)?,
            "trustservercertificate" => params.trust_server_certificate = parse_bool("url TrustServerCertificate", v)?,
            // Harmless keys of copied connection strings.
            "persist security info"
            | "multipleactiveresultsets"
            | "connection timeout"
            | "connect timeout"
            | "application name"
            | "applicationintent"
            | "multisubnetfailover" => {}
            other => return Err(SyncError::config(format!("url: unsupported connection-string key {other:?}"))),
        }
    }
    if params.host.is_empty() {
        return Err(SyncError::config("url: the connection string names no Server"));
    }
    if params.database.is_empty() {
        return Err(SyncError::config(
            "url: the connection string names no Database (CDC works in a user database, never in master)",
        ));
    }
    Ok(params)
}

impl SqlServerSourceConfig {
    /// A configuration with defaults for everything but the server and table.
    pub fn new(url: impl Into<String>, schema: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            user: None,
            password: None,
            schema: schema.into(),
            table: table.into(),
            encrypt: None,
            trust_server_certificate: None,
            aad_token: None,
            capture_instance: None,
            poll_interval_ms: DEFAULT_POLL_INTERVAL_MS,
            snapshot_chunk_rows: DEFAULT_SNAPSHOT_CHUNK_ROWS,
            max_batch_rows: DEFAULT_MAX_BATCH_ROWS,
            idle_advance_secs: DEFAULT_IDLE_ADVANCE_SECS,
            resnapshot_on_retention_loss: false,
        }
    }

    /// Names the first offending field.
    pub fn validate(&self) -> Result<(), SyncError> {
        self.connection()?;
        if self.schema.trim().is_empty() {
            return Err(SyncError::config("schema: must not be empty"));
        }
        if self.table.trim().is_empty() {
            return Err(SyncError::config("table: must not be empty"));
        }
        if self.snapshot_chunk_rows == 0 {
            return Err(SyncError::config("snapshot_chunk_rows: must be at least 1"));
        }
        if self.max_batch_rows == 0 {
            return Err(SyncError::config("max_batch_rows: must be at least 1"));
        }
        if self.poll_interval_ms == 0 {
            return Err(SyncError::config("poll_interval_ms: must be at least 1"));
        }
        Ok(())
    }

    /// The connection, from the URL and the TLS fields (which override the URL's).
    pub fn connection(&self) -> Result<ConnectionParams, SyncError> {
        let url = self.url.trim();
        if url.is_empty() {
            return Err(SyncError::config("url: must not be empty (e.g. mssql://user:password@host:1433/database)"));
        }
        let mut params = if url.contains("://") { parse_url(url)? } else { parse_ado(url)? };
        if let Some(e) = &self.encrypt {
            params.encrypt = Encrypt::parse("encrypt", e)?;
        }
        if let Some(t) = self.trust_server_certificate {
            params.trust_server_certificate = t;
        }
        if let Some(u) = &self.user {
            params.user = u.clone();
        }
        if let Some(p) = &self.password {
            params.password = p.clone();
        }
        if params.user.is_empty() && self.aad_token.is_none() {
            return Err(SyncError::config("url: no user (SQL authentication), and no aad_token"));
        }
        Ok(params)
    }

    /// The tiberius client configuration.
    pub fn tiberius_config(&self, application: &str) -> Result<Config, SyncError> {
        let p = self.connection()?;
        let mut c = Config::new();
        c.host(&p.host);
        c.port(p.port);
        c.database(&p.database);
        c.application_name(application);
        c.encryption(match p.encrypt {
            Encrypt::Required => EncryptionLevel::Required,
            Encrypt::LoginOnly => EncryptionLevel::Off,
            Encrypt::Off => EncryptionLevel::NotSupported,
        });
        if p.trust_server_certificate {
            c.trust_cert();
        }
        match &self.aad_token {
            Some(token) => c.authentication(AuthMethod::aad_token(token)),
            None => c.authentication(AuthMethod::sql_server(&p.user, &p.password)),
        }
        Ok(c)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cfg(url: &str) -> SqlServerSourceConfig {
        SqlServerSourceConfig::new(url, "dbo", "orders")
    }

    #[test]
    fn parses_mssql_urls() {
        let p = cfg("mssql://sa:p%40ss@db.example:14330/shop?encrypt=false&trustServerCertificate=true")
            .connection()
            .unwrap();
        assert_eq!((p.host.as_str(), p.port, p.database.as_str()), ("db.example", 14330, "shop"));
        assert_eq!((p.user.as_str(), p.password.as_str()), ("sa", "p@ss"));
        assert_eq!(p.encrypt, Encrypt::LoginOnly);
        assert!(p.trust_server_certificate);
        let p = cfg("mssql://u:pw@h/db").connection().unwrap();
        assert_eq!((p.port, p.encrypt, p.trust_server_certificate), (1433, Encrypt::Required, false));
    }

    #[test]
    fn parses_ado_connection_strings() {
        let p = cfg("Server=tcp:srv.database.windows.net,1433;Initial Catalog=shop;Persist Security Info=False;User ID=app;Password={p;w};Encrypt=True;TrustServerCertificate=False;Connection Timeout=30;")
            .connection();
        // `{…}` quoting of a value holding ';' is not supported; the part after ';' is refused.
        assert!(p.is_err());
        let p = cfg("Server=tcp:srv,1433;Initial Catalog=shop;User ID=app;Password=pw;Encrypt=True;TrustServerCertificate=False")
            .connection()
            .unwrap();
        assert_eq!((p.host.as_str(), p.port, p.database.as_str(), p.user.as_str()), ("srv", 1433, "shop", "app"));
        assert_eq!((p.encrypt, p.trust_server_certificate), (Encrypt::Required, false));
    }

    #[test]
    fn tls_fields_override_the_url_and_errors_name_the_field() {
        let mut c = cfg("mssql://u:pw@h/db");
        c.encrypt = Some("off".into());
        c.trust_server_certificate = Some(true);
        let p = c.connection().unwrap();
        assert_eq!((p.encrypt, p.trust_server_certificate), (Encrypt::Off, true));
        c.encrypt = Some("maybe".into());
        assert!(c.validate().unwrap_err().to_string().starts_with("encrypt:"));
        assert!(cfg("mssql://u:pw@h").validate().unwrap_err().to_string().contains("master"));
        assert!(cfg("postgres://u@h/db").validate().unwrap_err().to_string().starts_with("url:"));
        let mut c = cfg("mssql://u:pw@h/db");
        c.table = String::new();
        assert!(c.validate().unwrap_err().to_string().starts_with("table:"));
        let mut c = cfg("mssql://@h/db");
        assert!(c.validate().is_err());
        c.aad_token = Some("eyJ0".into());
        c.validate().unwrap();
    }

    #[test]
    fn secrets_never_print() {
        let mut c = cfg("mssql://sa:hunter2@h/db");
        c.aad_token = Some("tok-secret".into());
        let text = format!("{c:?} {:?}", c.connection().unwrap());
        assert!(!text.contains("hunter2") && !text.contains("tok-secret"), "{text}");
        assert_eq!(redact("mssql://sa:hunter2@h:1/db"), "mssql://sa:***@h:1/db");
        assert_eq!(redact("Server=h;Password=hunter2;User Id=sa"), "Server=h;Password=***;User Id=sa");
    }

    #[test]
    fn deserializes_from_a_spec() {
        let c: SqlServerSourceConfig = serde_json::from_value(serde_json::json!({
            "url": "mssql://u:pw@h/db", "table": "t", "trustServerCertificate": true
        }))
        .unwrap();
        assert_eq!((c.schema.as_str(), c.poll_interval_ms, c.trust_server_certificate), ("dbo", 200, Some(true)));
        assert!(
            serde_json::from_value::<SqlServerSourceConfig>(serde_json::json!({"url": "x", "table": "t", "nope": 1}))
                .is_err()
        );
    }
}
