//! Data sources: checking their properties and `datasource test`, through each type's
//! connector (see [`crate::connectors`]); what each type's properties are is documented there.

use std::collections::BTreeMap;

use crate::connectors;
use crate::error::{Error, Result};
use crate::model::{DataSource, DsType, TestResult};

/// Checks the properties of a new data source, naming the first problem. A type whose
/// connector is not in this build is stored with the generic checks only.
pub fn validate(ds_type: DsType, props: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in props {
        if k.trim().is_empty() {
            return Err(Error::bad_request("a property has an empty name"));
        }
        if v.contains('\n') && k != "ssl.ca.pem" && k != "ssl.certificate.pem" && k != "ssl.key.pem" {
            return Err(Error::bad_request(format!("property {k}: the value holds a line break")));
        }
    }
    match ds_type.connector() {
        Some(c) => c.validate(ds_type, props),
        None => Ok(()),
    }
}

/// `datasource test`: connects and says what is wrong. With `object` (a topic, a table), checks
/// it exactly as a task would (the connector's pre-flight check).
pub async fn test(ds: &DataSource, object: Option<&str>) -> TestResult {
    let result = match connectors::of(ds.ds_type) {
        Ok(c) => c.test(ds, object).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(message) => TestResult { ok: true, message },
        Err(err) => TestResult { ok: false, message: err.message },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn validates_each_family() {
        assert!(
            validate(DsType::Kafka, &props(&[("bootstrap.servers", "h:9092"), ("security.protocol", "SASL_SSL")]))
                .is_ok()
        );
        let err = validate(DsType::Kafka, &props(&[])).unwrap_err();
        assert!(err.message.contains("bootstrap.servers"), "{err}");
        let err = validate(DsType::Kafka, &props(&[("bootstrap.servers", "h:1"), ("group.id", "g")])).unwrap_err();
        assert!(err.message.contains("property group.id"), "{err}");
        assert!(validate(DsType::AuroraMysql, &props(&[("url", "mysql://h:3306/db"), ("password", "x")])).is_ok());
        let err = validate(DsType::Postgresql, &props(&[("url", "mysql://u:secret@h/db")])).unwrap_err();
        assert!(!err.message.contains("secret"), "{err}");
        assert!(validate(DsType::Lakehouse, &props(&[("root", "/tmp/x")])).is_ok());
        assert!(validate(DsType::Lakehouse, &props(&[])).is_err());
    }

    #[test]
    fn kafka_properties_pass_through() {
        let ds = DataSource {
            id: 1,
            name: "k".into(),
            ds_type: DsType::Kafka,
            ds_type_id: 2,
            properties: props(&[("bootstrap.servers", "h:9092"), ("sasl.password", "p")]),
            created_at: String::new(),
        };
        let cfg = crate::model::TaskConfig {
            source: Some("k".into()),
            source_table: Some("orders".into()),
            start_offset: Some("latest".into()),
            ..Default::default()
        };
        let spec = connectors::of(ds.ds_type).unwrap().source_spec(&ds, "t", &cfg, "orders").unwrap();
        let connectors::SourceSpec::Kafka(cfg) = spec else { panic!("kafka expected") };
        assert_eq!(cfg.bootstrap_servers, "h:9092");
        assert_eq!(cfg.start_offset.to_string(), "latest");
        assert_eq!(cfg.properties.get("sasl.password").map(String::as_str), Some("p"));
        assert!(!cfg.properties.contains_key("bootstrap.servers"));
        let shown = ds.redacted();
        assert_eq!(shown.properties["sasl.password"], "***");
    }
}
