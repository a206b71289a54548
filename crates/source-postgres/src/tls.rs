//! TLS for both connections, with libpq's `sslmode` semantics: `disable`, `prefer` (TLS when
//! the server offers it), `require` (TLS, the certificate is not checked), `verify-ca` (the
//! chain must lead to a trusted root) and `verify-full` (and the certificate must name the
//! host). Trusted roots come from `sslrootcert=PATH` (PEM) or, without it, Mozilla's roots
//! (webpki-roots), as the replication connection (`pgwire-replication`) does too.
//!
//! tokio-postgres takes a [`MakeTlsConnect`]; this is a small one over tokio-rustls with the
//! ring provider, so the SQL and replication connections verify the same way.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rtsync_core::{SyncError, SyncResult};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(text: &str) -> Option<SslMode> {
        Some(match text {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// The TLS part of a connection: the mode and the trusted roots' file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub root_cert: Option<PathBuf>,
}

impl TlsSettings {
    /// The replication connection's TLS configuration. pgwire-replication cannot check an IP
    /// address against the certificate: with `verify-full` and an IP host it checks the chain
    /// (as `verify-ca`) while the SQL connection to the same address checks the name too.
    pub(crate) fn replication(&self, host: &str) -> pgwire_replication::TlsConfig {
        use pgwire_replication::SslMode as M;
        let mode = match self.mode {
            SslMode::Disable => M::Disable,
            SslMode::Prefer => M::Prefer,
            SslMode::Require => M::Require,
            SslMode::VerifyCa => M::VerifyCa,
            SslMode::VerifyFull if host.parse::<std::net::IpAddr>().is_ok() => M::VerifyCa,
            SslMode::VerifyFull => M::VerifyFull,
        };
        pgwire_replication::TlsConfig { mode, ca_pem_path: self.root_cert.clone(), ..Default::default() }
    }

    /// The SQL connection's connector (unused when the mode is `disable`).
    pub(crate) fn connector(&self) -> SyncResult<RustlsConnect> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| SyncError::config(format!("postgres source: TLS setup failed: {e}")))?;
        let config = match self.mode {
            SslMode::Disable | SslMode::Prefer | SslMode::Require => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
                .with_no_client_auth(),
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let roots = Arc::new(self.roots()?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| SyncError::config(format!("postgres source: TLS roots: {e}")))?;
                let verifier: Arc<dyn ServerCertVerifier> =
                    if self.mode == SslMode::VerifyCa { Arc::new(ChainOnly(webpki)) } else { webpki };
                builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth()
            }
        };
        Ok(RustlsConnect { config: Arc::new(config) })
    }

    fn roots(&self) -> SyncResult<RootCertStore> {
        let mut store = RootCertStore::empty();
        match &self.root_cert {
            None => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            Some(path) => {
                for cert in read_pem_certificates(path)? {
                    store.add(cert).map_err(|e| {
                        SyncError::config(format!("postgres source: sslrootcert {}: {e}", path.display()))
                    })?;
                }
            }
        }
        Ok(store)
    }
}

/// The certificates of a PEM file.
fn read_pem_certificates(path: &Path) -> SyncResult<Vec<CertificateDer<'static>>> {
    use base64::Engine;
    let text = std::fs::read_to_string(path)
        .map_err(|e| SyncError::config(format!("postgres source: sslrootcert {}: {e}", path.display())))?;
    let mut out = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines().map(str::trim) {
        match (line, body.as_mut()) {
            ("-----BEGIN CERTIFICATE-----", None) => body = Some(String::new()),
            ("-----END CERTIFICATE-----", Some(b)) => {
                let der = base64::engine::general_purpose::STANDARD.decode(b.as_bytes()).map_err(|e| {
                    SyncError::config(format!("postgres source: sslrootcert {}: bad PEM: {e}", path.display()))
                })?;
                out.push(CertificateDer::from(der));
                body = None;
            }
            (l, Some(b)) => b.push_str(l),
            _ => {}
        }
    }
    if out.is_empty() {
        return Err(SyncError::config(format!(
            "postgres source: sslrootcert {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(out)
}

/// `require`: encrypt, accept whatever certificate the server shows (libpq's meaning).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must be trusted; the name in the certificate is not compared.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// tokio-postgres's TLS hook over tokio-rustls.
#[derive(Clone)]
pub(crate) struct RustlsConnect {
    config: Arc<ClientConfig>,
}

pub(crate) struct RustlsConnectOne {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnectOne;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<RustlsConnectOne> {
        let name = ServerName::try_from(domain.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("TLS server name {domain:?}: {e}")))?;
        Ok(RustlsConnectOne { config: self.config.clone(), name })
    }
}

impl<S> TlsConnect<S> for RustlsConnectOne
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = tokio_rustls::TlsConnector::from(self.config).connect(self.name, stream).await?;
            Ok(RustlsStream(tls))
        })
    }
}

pub(crate) struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    /// No channel binding: SCRAM-SHA-256 without `-PLUS`, as libpq does with `channel_binding=prefer`.
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

/// Takes the TLS options out of a libpq connection string (URL or key=value form), which
/// tokio-postgres would refuse (`verify-ca`, `verify-full`, `sslrootcert`); returns the rest.
pub fn split_tls_options(conninfo: &str) -> Result<(String, TlsSettings), String> {
    let mut tls = TlsSettings::default();
    let mut take = |key: &str, value: &str| -> Result<bool, String> {
        match key {
            "sslmode" => {
                tls.mode = SslMode::parse(value).ok_or_else(|| {
                    format!("sslmode {value:?}: use disable, prefer, require, verify-ca or verify-full")
                })?;
                Ok(true)
            }
            "sslrootcert" => {
                tls.root_cert = Some(PathBuf::from(value));
                Ok(true)
            }
            "sslcert" | "sslkey" | "sslpassword" => {
                Err(format!("{key}: client certificates are not supported; authenticate with a password"))
            }
            _ => Ok(false),
        }
    };
    let is_url = conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://");
    let rest = if is_url {
        match conninfo.split_once('?') {
            None => conninfo.to_string(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if !take(k, &rtsync_core::text::percent_decode(v))? {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) }
            }
        }
    } else {
        let mut kept = Vec::new();
        for word in conninfo.split_whitespace() {
            let (k, v) = word.split_once('=').unwrap_or((word, ""));
            if !take(k.trim(), v.trim().trim_matches('\''))? {
                kept.push(word);
            }
        }
        kept.join(" ")
    };
    if tls.root_cert.is_some() && tls.mode == SslMode::Prefer && !conninfo.contains("sslmode") {
        // libpq: a root certificate without an explicit sslmode means verify-ca.
        tls.mode = SslMode::VerifyCa;
    }
    Ok((rest, tls))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn takes_tls_options_out_of_urls_and_key_value_strings() {
        let (rest, tls) = split_tls_options(
            "postgres://u:p@h:5432/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p@h:5432/db?application_name=x");
        assert_eq!(tls, TlsSettings { mode: SslMode::VerifyFull, root_cert: Some("/tmp/ca.pem".into()) });
        let (rest, tls) = split_tls_options("postgres://u@h/db").unwrap();
        assert_eq!((rest.as_str(), tls.mode), ("postgres://u@h/db", SslMode::Prefer));
        let (rest, tls) = split_tls_options("host=h user=u sslmode=require dbname=d").unwrap();
        assert_eq!((rest.as_str(), tls.mode), ("host=h user=u dbname=d", SslMode::Require));
        let (_, tls) = split_tls_options("postgres://u@h/db?sslrootcert=/ca.pem").unwrap();
        assert_eq!(tls.mode, SslMode::VerifyCa, "libpq: a root certificate alone means verify-ca");
        assert!(split_tls_options("postgres://u@h/db?sslmode=sometimes").unwrap_err().contains("sslmode"));
        assert!(split_tls_options("postgres://u@h/db?sslcert=/c.pem").unwrap_err().contains("client certificates"));
    }

    #[test]
    fn a_root_file_without_certificates_is_named() {
        let dir = std::env::temp_dir().join(format!("rtsync-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty.pem");
        std::fs::write(&path, "nothing here\n").unwrap();
        let settings = TlsSettings { mode: SslMode::VerifyFull, root_cert: Some(path.clone()) };
        let err = settings.connector().err().unwrap().to_string();
        assert!(err.contains("holds no PEM certificate") && err.contains("empty.pem"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
