//! A Confluent-compatible Schema Registry served on loopback by a test or a bench: the
//! documented REST calls rtsync makes (`/schemas/ids/{id}`, `/subjects/{subject}/versions[/v]`),
//! with basic auth, `schemaType` and schema references.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use base64::Engine;

#[derive(Default)]
struct State {
    /// (subject, version, id, schema text, schemaType: None for Avro)
    schemas: Vec<(String, i32, u32, String, Option<&'static str>)>,
    /// The references of schema ids that have some.
    references: Vec<(u32, serde_json::Value)>,
}

#[derive(Clone)]
pub struct Registry {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl Registry {
    /// Serves until the test process ends; requests must carry `user:password`.
    pub fn start(user: &str, password: &str) -> Registry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let auth =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")));
        let served = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (status, body) = answer(&mut stream, &served, &auth).unwrap_or((400, "{}".into()));
                let reason = match status {
                    200 => "OK",
                    401 => "Unauthorized",
                    404 => "Not Found",
                    _ => "Bad Request",
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} {reason}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Registry { url, state }
    }

    /// Registers `schema` under `subject` as its next version; returns its global id
    /// (the same text under the same subject keeps its id, as the registry does).
    pub fn register(&self, subject: &str, schema: &str) -> u32 {
        self.register_typed(subject, schema, None)
    }

    /// [`register`](Self::register) with a `schemaType` (`PROTOBUF`).
    pub fn register_typed(&self, subject: &str, schema: &str, schema_type: Option<&'static str>) -> u32 {
        self.register_with_references(subject, schema, schema_type, serde_json::json!([]))
    }

    /// [`register_typed`](Self::register_typed) with schema references
    /// (`[{"name", "subject", "version"}]`).
    pub fn register_with_references(
        &self,
        subject: &str,
        schema: &str,
        schema_type: Option<&'static str>,
        references: serde_json::Value,
    ) -> u32 {
        let mut s = self.state.lock().unwrap();
        if let Some(found) = s.schemas.iter().find(|(sub, _, _, t, _)| sub == subject && t == schema) {
            return found.2;
        }
        let id = s.schemas.len() as u32 + 1;
        let version = s.schemas.iter().filter(|(sub, ..)| sub == subject).count() as i32 + 1;
        s.schemas.push((subject.to_string(), version, id, schema.to_string(), schema_type));
        if references.as_array().is_some_and(|r| !r.is_empty()) {
            s.references.push((id, references));
        }
        id
    }
}

fn answer(stream: &mut std::net::TcpStream, state: &Mutex<State>, auth: &str) -> std::io::Result<(u16, String)> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut authorized = false;
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or((header, ""));
        match name.to_ascii_lowercase().as_str() {
            "authorization" => authorized = value.trim() == auth,
            "content-length" => length = value.trim().parse().unwrap_or(0),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    if !authorized {
        return Ok((401, r#"{"error_code":401,"message":"Unauthorized"}"#.into()));
    }
    let s = state.lock().unwrap();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let not_found = (404, r#"{"error_code":40401,"message":"Subject not found."}"#.to_string());
    let references =
        |id: u32| s.references.iter().find(|r| r.0 == id).map_or(serde_json::json!([]), |r| r.1.clone());
    Ok(match parts.as_slice() {
        ["schemas", "ids", id] => match s.schemas.iter().find(|x| id.parse() == Ok(x.2)) {
            Some(x) => (
                200,
                serde_json::json!({ "schema": x.3, "schemaType": x.4, "references": references(x.2) }).to_string(),
            ),
            None => (404, r#"{"error_code":40403,"message":"Schema not found"}"#.into()),
        },
        ["subjects", subject, "versions"] => {
            let versions: Vec<i32> = s.schemas.iter().filter(|x| x.0 == *subject).map(|x| x.1).collect();
            if versions.is_empty() { not_found } else { (200, serde_json::to_string(&versions).unwrap()) }
        }
        ["subjects", subject, "versions", v] => {
            let mut mine = s.schemas.iter().filter(|x| x.0 == *subject);
            let found = if *v == "latest" { mine.next_back() } else { mine.find(|x| v.parse() == Ok(x.1)) };
            match found {
                Some(x) => (
                    200,
                    serde_json::json!({
                        "subject": x.0, "version": x.1, "id": x.2, "schema": x.3, "schemaType": x.4,
                        "references": references(x.2),
                    })
                    .to_string(),
                ),
                None => not_found,
            }
        }
        _ => not_found,
    })
}
