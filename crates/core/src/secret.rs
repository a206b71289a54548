//! Which configuration keys hold secrets. One list for every crate: the Kafka source's
//! `Debug`, the daemon's API answers and the catalog's encryption all ask [`is_secret_key`].

/// Substrings that mark a key as secret, lowercase. `password` covers `sasl.password` and
/// `ssl.key.password`, `secret` covers `AWS_SECRET_ACCESS_KEY` and `AZURE_CLIENT_SECRET`,
/// `token` covers `AWS_SESSION_TOKEN`.
const SECRET_MARKERS: [&str; 11] = [
    "password",
    "secret",
    "token",
    "credential",
    "sasl.oauthbearer.config",
    "ssl.key.pem",
    "basic.auth.user.info",
    "account_key",
    "sas_key",
    "service_account_key",
    "private_key",
];

/// Whether the value of `key` is a secret (case-insensitive): it is never printed, never
/// returned by the API, and encrypted in the catalog when a key is set.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SECRET_MARKERS.iter().any(|m| k.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_the_secrets_of_every_connector() {
        for key in [
            "password",
            "sasl.password",
            "SASL.PASSWORD",
            "ssl.key.password",
            "ssl.key.pem",
            "sasl.oauthbearer.config",
            "basic.auth.user.info",
            "schema.registry.basic.auth.user.info",
            "AWS_SECRET_ACCESS_KEY",
            "aws_secret_access_key",
            "AWS_SESSION_TOKEN",
            "AZURE_STORAGE_ACCOUNT_KEY",
            "azure_storage_sas_key",
            "AZURE_CLIENT_SECRET",
            "GOOGLE_SERVICE_ACCOUNT_KEY",
            "google_application_credentials",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in ["bootstrap.servers", "sasl.username", "url", "root", "AWS_ACCESS_KEY_ID", "AWS_REGION", "user"] {
            assert!(!is_secret_key(key), "{key}");
        }
    }
}
