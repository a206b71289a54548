//! Data source secrets: stored encrypted, or referenced, and resolved only when a connector
//! needs them.
//!
//! **Three modes**, per property:
//! - *By reference*: `password_env=RTSYNC_SECRET_PG` or `password_file=pg-password` (and the
//!   same `_env`/`_file` suffix on any secret key: `sasl.password_file`,
//!   `AWS_SECRET_ACCESS_KEY_env`). The catalog holds the name; the daemon reads the value when
//!   it tests a data source, browses it, previews or starts a task. So that an API caller
//!   cannot make the daemon read *its own* environment or files and send them to a host of
//!   the caller's choosing, only variables with the operator's prefix (`--secret-env-prefix`,
//!   default `RTSYNC_SECRET_`) and files under the operator's `--secrets-dir` are allowed.
//! - *Encrypted*: with a key (`RTSYNC_SECRET_KEY` or `--secret-key-file`: 32 bytes as hex or
//!   base64), every secret value is stored as `enc:v1:<base64(nonce ‖ ciphertext ‖ tag)>`,
//!   ChaCha20-Poly1305 (ring) with a random nonce per value and the property's name as
//!   associated data (a value cannot be moved to another property). `rtsync secrets rotate`
//!   re-encrypts under a new key.
//! - *Plaintext*: without a key; the daemon says so at start.
//!
//! A password inside a database `url` is split out into the `password` property when the data
//! source is created, so that it is encrypted like any other secret and the URL can be shown.
//!
//! Nothing here returns a resolved value to the API: [`Secrets::resolve`] is for connector
//! configurations only, and its errors name the variable or file, never a value.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use rtsync_core::secret::is_secret_key;
use rtsync_core::text::split_url_password;

use crate::error::{Error, Result};

/// The prefix of a stored encrypted value; the version names the cipher and layout.
pub const ENC_PREFIX: &str = "enc:v1:";
/// The variable that holds the key.
pub const KEY_ENV: &str = "RTSYNC_SECRET_KEY";
/// Environment variables a data source may reference start with this, unless the operator
/// sets another prefix.
pub const DEFAULT_ENV_PREFIX: &str = "RTSYNC_SECRET_";
pub const ENV_SUFFIX: &str = "_env";
pub const FILE_SUFFIX: &str = "_file";
/// The property a database URL's password moves to.
pub const PASSWORD: &str = "password";
pub const URL: &str = "url";
const KEY_LEN: usize = 32;

/// The key secrets are encrypted with. Prints nothing of itself.
pub struct SecretKey(LessSafeKey);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

impl SecretKey {
    /// A key from its text: 64 hex digits or the base64 of 32 bytes. `from` names where it
    /// came from, for the message.
    pub fn parse(text: &str, from: &str) -> Result<Self> {
        let t = text.trim();
        let bytes = if t.len() == 2 * KEY_LEN && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..KEY_LEN).map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16).unwrap_or(0)).collect()
        } else {
            STANDARD.decode(t).or_else(|_| URL_SAFE_NO_PAD.decode(t)).unwrap_or_default()
        };
        if bytes.len() != KEY_LEN {
            return Err(Error::bad_request(format!(
                "{from}: a secret key is 32 bytes, written as 64 hex digits or in base64 (`rtsync secrets keygen` makes one)"
            )));
        }
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
            .map_err(|_| Error::internal("the cipher refused a 32-byte key"))?;
        Ok(Self(LessSafeKey::new(unbound)))
    }

    /// A new random key, as 64 hex digits.
    pub fn generate() -> Result<String> {
        let mut bytes = [0u8; KEY_LEN];
        SystemRandom::new().fill(&mut bytes).map_err(|_| Error::internal("the system's random source failed"))?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The key from `RTSYNC_SECRET_KEY`, or from `file` when given; `None` when neither is.
    pub fn from_env_or_file(file: Option<&Path>) -> Result<Option<Self>> {
        match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Error::bad_request(format!("--secret-key-file {}: {e}", path.display())))?;
                Self::parse(&text, &format!("--secret-key-file {}", path.display())).map(Some)
            }
            None => match std::env::var(KEY_ENV) {
                Ok(text) if !text.trim().is_empty() => Self::parse(&text, KEY_ENV).map(Some),
                _ => Ok(None),
            },
        }
    }

    /// `enc:v1:…` for `plain`, bound to the property `name`.
    pub fn seal(&self, name: &str, plain: &str) -> Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| Error::internal("the system's random source failed"))?;
        let mut data = plain.as_bytes().to_vec();
        self.0
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(name.as_bytes()), &mut data)
            .map_err(|_| Error::internal("encrypting a secret failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(format!("{ENC_PREFIX}{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// The plaintext of an `enc:v1:` value of the property `name`.
    pub fn open(&self, name: &str, stored: &str) -> Result<String> {
        let wrong = || {
            Error::bad_request(format!(
                "property {name}: its encrypted value does not open with this key (the catalog was encrypted with another key: start the daemon with that one, or `rtsync secrets rotate` with it)"
            ))
        };
        let body = stored.strip_prefix(ENC_PREFIX).ok_or_else(wrong)?;
        let raw = URL_SAFE_NO_PAD.decode(body).map_err(|_| wrong())?;
        if raw.len() < NONCE_LEN {
            return Err(wrong());
        }
        let (nonce, data) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
        let mut data = data.to_vec();
        let plain = self.0.open_in_place(nonce, Aad::from(name.as_bytes()), &mut data).map_err(|_| wrong())?;
        String::from_utf8(plain.to_vec()).map_err(|_| wrong())
    }
}

/// Moves a password inside `url` to the `password` property, unless a password is given
/// otherwise (it overrides the URL's, so the URL's is only dropped). Returns whether `url`
/// changed. Applied at creation, and at start to data sources stored before it was.
pub fn move_url_password(props: &mut BTreeMap<String, String>) -> bool {
    let Some((without, password)) = props.get(URL).and_then(|u| split_url_password(u)) else {
        return false;
    };
    let given = [PASSWORD.to_string(), format!("{PASSWORD}{ENV_SUFFIX}"), format!("{PASSWORD}{FILE_SUFFIX}")]
        .iter()
        .any(|k| props.contains_key(k));
    if !given {
        props.insert(PASSWORD.to_string(), password);
    }
    props.insert(URL.to_string(), without);
    true
}

/// Whether a stored value is encrypted.
pub fn is_encrypted(value: &str) -> bool {
    value.starts_with(ENC_PREFIX)
}

/// A reference property (`K_env`, `K_file` with `K` a secret key): the secret key it fills
/// and whether it names a variable (true) or a file.
pub fn reference(key: &str) -> Option<(&str, bool)> {
    let (base, env) =
        if let Some(b) = key.strip_suffix(ENV_SUFFIX) { (b, true) } else { (key.strip_suffix(FILE_SUFFIX)?, false) };
    is_secret_key(base).then_some((base, env))
}

/// Whether a property's value must not leave the daemon: a secret key's, and any encrypted one.
pub fn is_secret_property(key: &str, value: &str) -> bool {
    reference(key).is_none() && (is_secret_key(key) || is_encrypted(value))
}

/// The operator's rules for secrets, and the key. Built once at start.
#[derive(Debug)]
pub struct Secrets {
    key: Option<SecretKey>,
    env_prefix: String,
    /// Canonical.
    dir: Option<PathBuf>,
}

impl Secrets {
    pub fn new(key: Option<SecretKey>, env_prefix: Option<String>, dir: Option<&Path>) -> Result<Self> {
        let env_prefix = env_prefix.unwrap_or_else(|| DEFAULT_ENV_PREFIX.to_string());
        if env_prefix.trim().is_empty() {
            return Err(Error::bad_request(
                "--secret-env-prefix must not be empty: it would let API callers read every environment variable",
            ));
        }
        let dir = dir
            .map(|d| d.canonicalize().map_err(|e| Error::bad_request(format!("--secrets-dir {}: {e}", d.display()))))
            .transpose()?;
        Ok(Self { key, env_prefix, dir })
    }

    /// Plaintext, no references allowed but variables with the default prefix.
    pub fn plaintext() -> Self {
        Self { key: None, env_prefix: DEFAULT_ENV_PREFIX.to_string(), dir: None }
    }

    pub fn key(&self) -> Option<&SecretKey> {
        self.key.as_ref()
    }

    pub fn env_prefix(&self) -> &str {
        &self.env_prefix
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Checks a reference against the operator's rules, without reading it.
    fn check_reference(&self, key: &str, value: &str, env: bool) -> Result<()> {
        let value = value.trim();
        if env {
            let valid = !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid || !value.starts_with(&self.env_prefix) {
                return Err(Error::bad_request(format!(
                    "property {key}: {value:?} is not allowed: a data source may only reference environment variables whose name starts with {:?} (the daemon's --secret-env-prefix)",
                    self.env_prefix
                )));
            }
            return Ok(());
        }
        let Some(dir) = &self.dir else {
            return Err(Error::bad_request(format!(
                "property {key}: file references are off: start the daemon with --secrets-dir DIR to allow files under DIR"
            )));
        };
        let path = Path::new(value);
        let outside = || {
            Error::bad_request(format!(
                "property {key}: {value:?} is not allowed: a data source may only reference files under the daemon's --secrets-dir {}",
                dir.display()
            ))
        };
        if value.is_empty() || path.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(outside());
        }
        if path.is_absolute() && !path.starts_with(dir) {
            return Err(outside());
        }
        Ok(())
    }

    /// Reads a file reference, following links only when they stay under the secrets dir.
    fn read_file(&self, key: &str, value: &str) -> Result<String> {
        self.check_reference(key, value, false)?;
        let dir = self.dir.as_deref().ok_or_else(|| Error::internal("checked above"))?;
        let path = dir.join(value.trim());
        let real = path.canonicalize().map_err(|e| {
            Error::bad_request(format!("property {key}: the secret file {} cannot be read: {e}", path.display()))
        })?;
        if !real.starts_with(dir) {
            return Err(Error::bad_request(format!(
                "property {key}: {} leads outside the daemon's --secrets-dir {}",
                path.display(),
                dir.display()
            )));
        }
        let text = std::fs::read_to_string(&real).map_err(|e| {
            Error::bad_request(format!("property {key}: the secret file {} cannot be read: {e}", path.display()))
        })?;
        Ok(text.trim_end_matches(['\n', '\r']).to_string())
    }

    /// What the catalog stores for the properties a data source is created with: references
    /// checked, a URL's password split out, secrets encrypted when there is a key.
    pub fn store(&self, props: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
        let mut out = props.clone();
        for (k, v) in props {
            if let Some((base, env)) = reference(k) {
                self.check_reference(k, v, env)?;
                if props.contains_key(base) {
                    return Err(Error::bad_request(format!("properties {base} and {k} are both given: keep one")));
                }
            } else if is_encrypted(v) {
                return Err(Error::bad_request(format!(
                    "property {k}: a value starting with {ENC_PREFIX:?} is reserved for the catalog's encrypted secrets"
                )));
            }
        }
        if props.get(URL).and_then(|u| split_url_password(u)).is_some()
            && [PASSWORD.to_string(), format!("{PASSWORD}{ENV_SUFFIX}"), format!("{PASSWORD}{FILE_SUFFIX}")]
                .iter()
                .any(|k| props.contains_key(k))
        {
            return Err(Error::bad_request(
                "the url holds a password and the password is given too: keep one (better: password_env or password_file)",
            ));
        }
        move_url_password(&mut out);
        self.seal_all(&out, self.key.as_ref())
    }

    /// The properties with every secret sealed under `key` (plaintext when `None`); values
    /// already encrypted are opened with this daemon's key first. For `rotate` and for a key
    /// set on a catalog that held plaintext.
    pub fn seal_all(
        &self,
        props: &BTreeMap<String, String>,
        key: Option<&SecretKey>,
    ) -> Result<BTreeMap<String, String>> {
        props
            .iter()
            .map(|(k, v)| {
                if !is_secret_property(k, v) {
                    return Ok((k.clone(), v.clone()));
                }
                let plain = self.open(k, v)?;
                let stored = match key {
                    Some(key) => key.seal(k, &plain)?,
                    None => plain,
                };
                Ok((k.clone(), stored))
            })
            .collect()
    }

    fn open(&self, k: &str, v: &str) -> Result<String> {
        if !is_encrypted(v) {
            return Ok(v.to_string());
        }
        match &self.key {
            Some(key) => key.open(k, v),
            None => Err(Error::bad_request(format!(
                "property {k} is encrypted and this daemon has no key: start it with {KEY_ENV} or --secret-key-file"
            ))),
        }
    }

    /// What a connector gets: secrets decrypted and references read. Never stored, never
    /// returned by the API.
    pub fn resolve(&self, props: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for (k, v) in props {
            match reference(k) {
                Some((base, true)) => {
                    self.check_reference(k, v, true)?;
                    let value = std::env::var(v.trim()).map_err(|_| {
                        Error::bad_request(format!(
                            "property {k}: the environment variable {} is not set in the daemon",
                            v.trim()
                        ))
                    })?;
                    out.insert(base.to_string(), value);
                }
                Some((base, false)) => {
                    out.insert(base.to_string(), self.read_file(k, v)?);
                }
                None => {
                    out.insert(k.clone(), self.open(k, v)?);
                }
            }
        }
        Ok(out)
    }
}

/// The properties with every reference and encrypted value replaced by a `***` under the key
/// it fills: what [`crate::datasource::validate`] checks (names and shape, not secret values).
pub fn placeholders(props: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    props
        .iter()
        .map(|(k, v)| match reference(k) {
            Some((base, _)) => (base.to_string(), crate::model::REDACTED.to_string()),
            None if is_encrypted(v) => (k.clone(), crate::model::REDACTED.to_string()),
            None => (k.clone(), v.clone()),
        })
        .collect()
}

/// Properties as the API shows them: secret values `***`, a URL's password `***`,
/// references as they are (a variable's name or a file's path is not the secret).
pub fn shown(props: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    props
        .iter()
        .map(|(k, v)| {
            let shown = if is_secret_property(k, v) {
                crate::model::REDACTED.to_string()
            } else if k == URL {
                crate::model::redact_url(v)
            } else {
                v.clone()
            };
            (k.clone(), shown)
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn key() -> SecretKey {
        SecretKey::parse(HEX, "test").unwrap()
    }

    #[test]
    fn keys_parse_from_hex_and_base64_only_at_32_bytes() {
        let b64 = STANDARD.encode((0u8..32).collect::<Vec<_>>());
        let sealed = key().seal("password", "hunter2").unwrap();
        assert_eq!(SecretKey::parse(&b64, "b64").unwrap().open("password", &sealed).unwrap(), "hunter2");
        let err = SecretKey::parse("abcd", "RTSYNC_SECRET_KEY").unwrap_err();
        assert!(err.message.contains("RTSYNC_SECRET_KEY") && err.message.contains("32 bytes"), "{err}");
        assert_eq!(SecretKey::generate().unwrap().len(), 64);
        assert_ne!(SecretKey::generate().unwrap(), SecretKey::generate().unwrap());
        assert_eq!(format!("{:?}", key()), "SecretKey(***)");
    }

    #[test]
    fn sealed_values_are_random_bound_and_authenticated() {
        let k = key();
        let a = k.seal("password", "hunter2").unwrap();
        let b = k.seal("password", "hunter2").unwrap();
        assert!(a.starts_with(ENC_PREFIX) && !a.contains("hunter2"));
        assert_ne!(a, b, "a random nonce per value");
        assert_eq!(k.open("password", &a).unwrap(), "hunter2");
        assert!(k.open("sasl.password", &a).is_err(), "bound to its property");
        let mut tampered = a.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(k.open("password", &String::from_utf8(tampered).unwrap()).is_err());
        let other = SecretKey::parse(&"11".repeat(32), "other").unwrap();
        let err = other.open("password", &a).unwrap_err();
        assert!(err.message.contains("another key") && !err.message.contains("hunter2"), "{err}");
    }

    #[test]
    fn stored_form_splits_the_url_password_and_encrypts() {
        let s = Secrets::new(Some(key()), None, None).unwrap();
        let stored =
            s.store(&props(&[("url", "postgres://app:s3cr%40t@db:5432/shop"), ("sasl.password", "k-pw")])).unwrap();
        assert_eq!(stored["url"], "postgres://app@db:5432/shop");
        assert!(is_encrypted(&stored["password"]) && is_encrypted(&stored["sasl.password"]));
        let text = serde_json::to_string(&stored).unwrap();
        assert!(!text.contains("s3cr") && !text.contains("k-pw"), "{text}");
        let resolved = s.resolve(&stored).unwrap();
        assert_eq!(resolved["password"], "s3cr@t");
        assert_eq!(resolved["sasl.password"], "k-pw");
        let shown = shown(&stored);
        assert_eq!(shown["password"], "***");
        assert_eq!(shown["url"], "postgres://app@db:5432/shop");

        // A catalog written before the split gets it at start; a given password wins.
        let mut old = props(&[("url", "mysql://u:old@h/db"), ("password_env", "RTSYNC_SECRET_X")]);
        assert!(move_url_password(&mut old));
        assert_eq!(old, props(&[("url", "mysql://u@h/db"), ("password_env", "RTSYNC_SECRET_X")]));
        assert!(!move_url_password(&mut old), "once");
        let plain = Secrets::plaintext().store(&props(&[("url", "mysql://u:pw@h/db")])).unwrap();
        assert_eq!(plain["password"], "pw", "without a key, stored as given");
        let err = s.store(&props(&[("url", "mysql://u:pw@h/db"), ("password", "x")])).unwrap_err();
        assert!(err.message.contains("keep one"), "{err}");
        let err = s.store(&props(&[("password", "enc:v1:abc")])).unwrap_err();
        assert!(err.message.contains("reserved"), "{err}");
        // Without the key, encrypted values cannot be used, and say how to fix it.
        let err = Secrets::plaintext().resolve(&stored).unwrap_err();
        assert!(err.message.contains(KEY_ENV), "{err}");
        // Rotation: open with the old key, seal with the new one.
        let new = SecretKey::parse(&"22".repeat(32), "new").unwrap();
        let rotated = s.seal_all(&stored, Some(&new)).unwrap();
        assert_eq!(rotated["url"], stored["url"]);
        assert_eq!(new.open("password", &rotated["password"]).unwrap(), "s3cr@t");
    }

    #[test]
    fn references_only_under_the_operators_prefix_and_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pg"), "file-pw\n").unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("x"), "not-yours").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(outside.path().join("x"), dir.path().join("link")).unwrap();
        let s = Secrets::new(None, Some("RTSYNC_TEST_SECRETS_UNIT_".into()), Some(dir.path())).unwrap();

        let err = s.store(&props(&[("password_env", "HOME")])).unwrap_err();
        assert!(err.message.contains("RTSYNC_TEST_SECRETS_UNIT_"), "{err}");
        let err = s.store(&props(&[("sasl.password_file", "/etc/passwd")])).unwrap_err();
        assert!(err.message.contains("--secrets-dir"), "{err}");
        assert!(s.store(&props(&[("password_file", "../x")])).is_err());
        let err = Secrets::plaintext().store(&props(&[("password_file", "pg")])).unwrap_err();
        assert!(err.message.contains("--secrets-dir"), "{err}");
        let err = s.store(&props(&[("password_file", "pg"), ("password", "x")])).unwrap_err();
        assert!(err.message.contains("both"), "{err}");
        assert!(Secrets::new(None, Some(" ".into()), None).is_err(), "an empty prefix allows everything");

        let stored = s.store(&props(&[("password_file", "pg"), ("url", "postgres://u@h/db")])).unwrap();
        assert_eq!(stored["password_file"], "pg", "stored as the reference");
        assert_eq!(shown(&stored)["password_file"], "pg");
        let resolved = s.resolve(&stored).unwrap();
        assert_eq!(resolved["password"], "file-pw");
        assert!(!resolved.contains_key("password_file"));
        let abs = dir.path().canonicalize().unwrap().join("pg");
        assert_eq!(s.resolve(&props(&[("password_file", abs.to_str().unwrap())])).unwrap()["password"], "file-pw");
        #[cfg(unix)]
        {
            let err = s.resolve(&props(&[("password_file", "link")])).unwrap_err();
            assert!(err.message.contains("outside") && !err.message.contains("not-yours"), "{err}");
        }
        let err = s.resolve(&props(&[("password_env", "RTSYNC_TEST_SECRETS_UNIT_MISSING")])).unwrap_err();
        assert!(err.message.contains("is not set"), "{err}");
        // A reference key is not itself a secret; its base is filled in.
        assert_eq!(reference("AWS_SECRET_ACCESS_KEY_env"), Some(("AWS_SECRET_ACCESS_KEY", true)));
        assert_eq!(reference("root_file"), None);
    }
}
