//! Small text helpers every connector and the control plane share: connection strings with
//! their passwords hidden, and percent-encoding.

/// The connection string with its password replaced by `***`: the URL form
/// (`scheme://user:password@host/…`) and libpq's key=value form (`password=…`). Everything
/// else is kept, so the message still says which server and database.
pub fn redact_url(text: &str) -> String {
    if let Some((scheme, rest)) = text.split_once("://") {
        let (authority, tail) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if let Some((userinfo, host)) = authority.rsplit_once('@')
            && let Some((user, _)) = userinfo.split_once(':')
        {
            return format!("{scheme}://{user}:***@{host}{tail}");
        }
        return text.to_string();
    }
    text.split_whitespace()
        .map(|kv| if kv.starts_with("password=") { "password=***".to_string() } else { kv.to_string() })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Splits the password out of a connection string: the string without it, and the password
/// (percent-decoded in the URL form). `None` when it holds no password. Both forms of
/// [`redact_url`] are understood.
pub fn split_url_password(text: &str) -> Option<(String, String)> {
    if let Some((scheme, rest)) = text.split_once("://") {
        let (authority, tail) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (userinfo, host) = authority.rsplit_once('@')?;
        let (user, password) = userinfo.split_once(':')?;
        return Some((format!("{scheme}://{user}@{host}{tail}"), percent_decode(password)));
    }
    let mut password = None;
    let kept: Vec<&str> = text
        .split_whitespace()
        .filter(|kv| match kv.strip_prefix("password=") {
            Some(p) => {
                password = Some(p.to_string());
                false
            }
            None => true,
        })
        .collect();
    password.map(|p| (kept.join(" "), p))
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as it is. Bytes that are
/// not UTF-8 become U+FFFD.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()))
            .flatten();
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes every byte but ASCII letters, digits and `-_.~` as `%XX`.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_passwords_in_both_forms() {
        assert_eq!(redact_url("postgres://u:p@h:1/db?x=y"), "postgres://u:***@h:1/db?x=y");
        assert_eq!(redact_url("mysql://u:p@ss@db.example:3307/x"), "mysql://u:***@db.example:3307/x");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("host=h password=p user=u"), "host=h password=*** user=u");
    }

    #[test]
    fn splits_passwords_out_of_both_forms() {
        assert_eq!(
            split_url_password("postgres://u:p%40ss@h:1/db?x=y"),
            Some(("postgres://u@h:1/db?x=y".to_string(), "p@ss".to_string()))
        );
        assert_eq!(
            split_url_password("mysql://u:p@ss@db.example:3307/x"),
            Some(("mysql://u@db.example:3307/x".to_string(), "p@ss".to_string()))
        );
        assert_eq!(split_url_password("postgres://u@h/db"), None);
        assert_eq!(
            split_url_password("host=h password=p user=u"),
            Some(("host=h user=u".to_string(), "p".to_string()))
        );
        assert_eq!(split_url_password("host=h user=u"), None);
    }

    #[test]
    fn percent_round_trip() {
        assert_eq!(percent_decode(&percent_encode("a b/ü$")), "a b/ü$");
        assert_eq!(percent_decode("%2Ftmp%2Fca.pem"), "/tmp/ca.pem");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%é1"), "%é1", "a multi-byte character after % is kept");
    }
}
