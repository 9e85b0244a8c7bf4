//! Records that kumod's log hook POSTs to Lookout (`POST /api/v1/sources/{id}/kumomta/logs`):
//! one JSON object per request from a webhook hook, or an array of them from a batching hook.
//!
//! A body is accepted whole or not at all, so that a malformed batch stores nothing and the
//! hook's retry sends it again whole; the error names the element and field at fault
//! (`[3].timestamp: expected an integer (unix seconds)`). Only `type`, `id` and `timestamp` are
//! required; unknown fields are ignored.
//!
//! Each record yields a `message:status` event ([`LogRecord::event_data`]), a key to count it
//! once even if the hook sends it again ([`LogRecord::dedup_key`]), and the per-queue counter it
//! adds to ([`LogRecord::counter_name`]): `kumomta_log_delivered_total`,
//! `kumomta_log_bounced_total`, `kumomta_log_deferred_total`, `kumomta_log_received_total`,
//! `kumomta_log_expired_total`, labelled `queue`.

use super::snapshot::rfc3339;
use crate::series::Labels;
use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// kumod's record types.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RecordKind {
    Reception,
    Delivery,
    Bounce,
    TransientFailure,
    Expiration,
    AdminBounce,
    OOB,
    Feedback,
    Rejection,
    AdminRebind,
    /// kumod calls it `DeferredInjectionRebind`; `DeferredInjection` is accepted too.
    DeferredInjection,
    Delayed,
    /// A type this version of Lookout does not know, kept as written.
    Other(String),
}

impl RecordKind {
    pub fn from_name(name: &str) -> Self {
        match name {
            "Reception" => Self::Reception,
            "Delivery" => Self::Delivery,
            "Bounce" => Self::Bounce,
            "TransientFailure" => Self::TransientFailure,
            "Expiration" => Self::Expiration,
            "AdminBounce" => Self::AdminBounce,
            "OOB" => Self::OOB,
            "Feedback" => Self::Feedback,
            "Rejection" => Self::Rejection,
            "AdminRebind" => Self::AdminRebind,
            "DeferredInjectionRebind" | "DeferredInjection" => Self::DeferredInjection,
            "Delayed" => Self::Delayed,
            other => Self::Other(other.to_string()),
        }
    }

    /// The name kumod uses.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Reception => "Reception",
            Self::Delivery => "Delivery",
            Self::Bounce => "Bounce",
            Self::TransientFailure => "TransientFailure",
            Self::Expiration => "Expiration",
            Self::AdminBounce => "AdminBounce",
            Self::OOB => "OOB",
            Self::Feedback => "Feedback",
            Self::Rejection => "Rejection",
            Self::AdminRebind => "AdminRebind",
            Self::DeferredInjection => "DeferredInjectionRebind",
            Self::Delayed => "Delayed",
            Self::Other(name) => name,
        }
    }
}

impl Serialize for RecordKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The SMTP response in a record.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LogResponse {
    pub code: Option<u16>,
    pub content: Option<String>,
    /// `class.subject.detail`, e.g. `4.7.0`.
    pub enhanced_code: Option<String>,
    pub command: Option<String>,
}

/// One kumod log record, with the fields Lookout uses.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogRecord {
    #[serde(rename = "type")]
    pub kind: RecordKind,
    /// kumod's message (spool) id.
    pub id: String,
    /// When kumod logged the event (whole seconds).
    pub timestamp: DateTime<Utc>,
    pub created: Option<DateTime<Utc>>,
    pub queue: Option<String>,
    pub site: Option<String>,
    pub sender: Option<String>,
    pub recipient: Option<String>,
    pub size: Option<u64>,
    pub response: Option<LogResponse>,
    pub num_attempts: Option<u32>,
    pub bounce_classification: Option<String>,
    pub egress_pool: Option<String>,
    pub egress_source: Option<String>,
    pub provider_name: Option<String>,
    pub nodeid: Option<String>,
}

/// Why a log body was refused: `path` names the element and field (`[3].timestamp`, or `body`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct LogRecordError {
    pub path: String,
    pub message: String,
}

impl LogRecordError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Parses a log-hook body: one record object, or an array of them. All or nothing.
pub fn parse_log_body(body: &[u8]) -> Result<Vec<LogRecord>, LogRecordError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|err| LogRecordError::new("body", format!("not valid JSON: {err}")))?;
    match value {
        Value::Object(object) => Ok(vec![LogRecord::from_object(&object, "")?]),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let prefix = format!("[{index}]");
                match item {
                    Value::Object(object) => LogRecord::from_object(object, &prefix),
                    _ => Err(LogRecordError::new(prefix, "expected a JSON object")),
                }
            })
            .collect(),
        _ => Err(LogRecordError::new(
            "body",
            "expected a JSON object or an array of objects",
        )),
    }
}

impl LogRecord {
    fn from_object(object: &Map<String, Value>, prefix: &str) -> Result<Self, LogRecordError> {
        let fields = Fields { object, prefix };
        let kind = fields
            .string("type")?
            .ok_or_else(|| fields.error("type", "is missing"))?;
        if kind.is_empty() {
            return Err(fields.error("type", "must not be empty"));
        }
        let id = fields
            .string("id")?
            .ok_or_else(|| fields.error("id", "is missing"))?;
        if id.is_empty() {
            return Err(fields.error("id", "must not be empty"));
        }
        let timestamp = fields
            .unix_seconds("timestamp")?
            .ok_or_else(|| fields.error("timestamp", "is missing"))?;
        Ok(Self {
            kind: RecordKind::from_name(&kind),
            id,
            timestamp,
            created: fields.unix_seconds("created")?,
            queue: fields.string("queue")?,
            site: fields.string("site")?,
            sender: fields.string("sender")?,
            recipient: fields.string("recipient")?,
            size: fields.unsigned("size", u64::MAX)?,
            response: fields.response("response")?,
            num_attempts: fields
                .unsigned("num_attempts", u64::from(u32::MAX))?
                .and_then(|n| u32::try_from(n).ok()),
            bounce_classification: fields.text_or_json("bounce_classification"),
            egress_pool: fields.string("egress_pool")?,
            egress_source: fields.string("egress_source")?,
            provider_name: fields.string("provider_name")?,
            nodeid: fields.string("nodeid")?,
        })
    }

    /// The `message:status` status: `delivered`, `bounced`, `deferred`, `expired`,
    /// `received`, `complaint`, `rejected`, `rebound`, `queued`, `delayed`, or an unknown
    /// type's name in snake_case.
    pub fn status(&self) -> String {
        match &self.kind {
            RecordKind::Delivery => "delivered".into(),
            RecordKind::Bounce | RecordKind::AdminBounce | RecordKind::OOB => "bounced".into(),
            RecordKind::TransientFailure => "deferred".into(),
            RecordKind::Expiration => "expired".into(),
            RecordKind::Reception => "received".into(),
            RecordKind::Feedback => "complaint".into(),
            RecordKind::Rejection => "rejected".into(),
            RecordKind::AdminRebind => "rebound".into(),
            // Moved from the deferred-injection queue into its real queue.
            RecordKind::DeferredInjection => "queued".into(),
            RecordKind::Delayed => "delayed".into(),
            RecordKind::Other(name) => snake_case(name),
        }
    }

    /// A stable key per record, so that a record sent twice is counted once, while each
    /// attempt at each recipient of a message stays distinct: a hash of type, id, timestamp,
    /// attempt number and recipient.
    pub fn dedup_key(&self) -> String {
        let mut hasher = Sha256::new();
        let mut field = |bytes: Option<&[u8]>| {
            // 0x00/0x01 mark absent/present; 0xff never occurs in UTF-8 and ends each field.
            match bytes {
                Some(bytes) => {
                    hasher.update([1]);
                    hasher.update(bytes);
                }
                None => hasher.update([0]),
            }
            hasher.update([0xff]);
        };
        field(Some(self.kind.as_str().as_bytes()));
        field(Some(self.id.as_bytes()));
        field(Some(self.timestamp.timestamp().to_string().as_bytes()));
        field(
            self.num_attempts
                .map(|n| n.to_string())
                .as_deref()
                .map(str::as_bytes),
        );
        field(self.recipient.as_deref().map(str::as_bytes));
        let digest = hasher.finalize();
        digest
            .iter()
            .take(16)
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// The `message:status` event data (protocol.md):
    /// `{message_id, status, queue, timestamp, details}`.
    pub fn event_data(&self) -> Value {
        json!({
            "message_id": self.id,
            "status": self.status(),
            "queue": self.queue,
            "timestamp": rfc3339(self.timestamp),
            "details": {
                "type": self.kind,
                "recipient": self.recipient,
                "sender": self.sender,
                "site": self.site,
                "response": self.response,
                "num_attempts": self.num_attempts,
                "bounce_classification": self.bounce_classification,
                "egress_pool": self.egress_pool,
                "egress_source": self.egress_source,
            },
        })
    }

    /// The per-queue counter this record adds one to, if any.
    pub fn counter_name(&self) -> Option<&'static str> {
        match self.kind {
            RecordKind::Delivery => Some("kumomta_log_delivered_total"),
            RecordKind::Bounce | RecordKind::AdminBounce | RecordKind::OOB => {
                Some("kumomta_log_bounced_total")
            }
            RecordKind::TransientFailure => Some("kumomta_log_deferred_total"),
            RecordKind::Reception => Some("kumomta_log_received_total"),
            RecordKind::Expiration => Some("kumomta_log_expired_total"),
            _ => None,
        }
    }

    /// The labels of that counter: `queue`, when the record names one.
    pub fn counter_labels(&self) -> Labels {
        self.queue
            .iter()
            .filter(|queue| !queue.is_empty())
            .map(|queue| ("queue".to_string(), queue.clone()))
            .collect()
    }
}

/// Typed access to a record's fields that names the field in its errors.
struct Fields<'a> {
    object: &'a Map<String, Value>,
    prefix: &'a str,
}

impl Fields<'_> {
    fn path(&self, field: &str) -> String {
        if self.prefix.is_empty() {
            field.to_string()
        } else {
            format!("{}.{field}", self.prefix)
        }
    }

    fn error(&self, field: &str, message: &str) -> LogRecordError {
        LogRecordError::new(self.path(field), message)
    }

    /// A present, non-null value.
    fn get(&self, field: &str) -> Option<&Value> {
        self.object.get(field).filter(|value| !value.is_null())
    }

    fn string(&self, field: &str) -> Result<Option<String>, LogRecordError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(self.error(field, "expected a string")),
        }
    }

    fn unsigned(&self, field: &str, max: u64) -> Result<Option<u64>, LogRecordError> {
        match self.get(field) {
            None => Ok(None),
            Some(value) => match value.as_u64().filter(|n| *n <= max) {
                Some(n) => Ok(Some(n)),
                None => Err(self.error(field, &format!("expected an integer from 0 to {max}"))),
            },
        }
    }

    fn unix_seconds(&self, field: &str) -> Result<Option<DateTime<Utc>>, LogRecordError> {
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        let seconds = value
            .as_i64()
            .ok_or_else(|| self.error(field, "expected an integer (unix seconds)"))?;
        DateTime::from_timestamp(seconds, 0)
            .map(Some)
            .ok_or_else(|| self.error(field, "is out of range"))
    }

    /// A classification is informational: take any JSON kumod writes, as text.
    fn text_or_json(&self, field: &str) -> Option<String> {
        self.get(field).map(|value| match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        })
    }

    fn response(&self, field: &str) -> Result<Option<LogResponse>, LogRecordError> {
        let object = match self.get(field) {
            None => return Ok(None),
            Some(Value::Object(object)) => object,
            Some(_) => return Err(self.error(field, "expected an object")),
        };
        let prefix = self.path(field);
        let inner = Fields {
            object,
            prefix: &prefix,
        };
        let code = inner
            .unsigned("code", u64::from(u16::MAX))?
            .and_then(|code| u16::try_from(code).ok());
        let enhanced_code = match inner.get("enhanced_code") {
            None => None,
            Some(Value::Object(parts)) => {
                let part = |name: &str| parts.get(name).and_then(Value::as_u64);
                match (part("class"), part("subject"), part("detail")) {
                    (Some(class), Some(subject), Some(detail)) => {
                        Some(format!("{class}.{subject}.{detail}"))
                    }
                    _ => {
                        return Err(inner.error(
                            "enhanced_code",
                            "expected an object with integer class, subject and detail",
                        ));
                    }
                }
            }
            // Some producers write it already formatted.
            Some(Value::String(text)) => Some(text.clone()),
            Some(_) => return Err(inner.error("enhanced_code", "expected an object")),
        };
        Ok(Some(LogResponse {
            code,
            content: inner.string("content")?,
            enhanced_code,
            command: inner.string("command")?,
        }))
    }
}

/// `SomeNewType` → `some_new_type`.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (index, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if index > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;
    use proptest::prelude::*;

    fn fixture_records() -> Vec<LogRecord> {
        fixtures::LOG_RECORDS
            .lines()
            .filter(|line| !line.trim().is_empty())
            .flat_map(|line| parse_log_body(line.as_bytes()).expect("fixture record"))
            .collect()
    }

    #[test]
    fn fixture_records_parse() {
        let records = fixture_records();
        assert_eq!(records.len(), 2);

        let reception = &records[0];
        assert_eq!(reception.kind, RecordKind::Reception);
        assert_eq!(reception.id, "44d70f50e60111ed8162000d3afc4acf");
        assert_eq!(reception.timestamp.timestamp(), 1682712864);
        assert_eq!(reception.queue.as_deref(), Some("example.com"));
        assert_eq!(reception.num_attempts, Some(0));
        assert_eq!(reception.egress_pool, None);
        assert_eq!(reception.response.as_ref().and_then(|r| r.code), Some(250));
        assert_eq!(reception.status(), "received");
        assert_eq!(reception.counter_name(), Some("kumomta_log_received_total"));

        let deferral = &records[1];
        assert_eq!(deferral.kind, RecordKind::TransientFailure);
        assert_eq!(
            deferral.site.as_deref(),
            Some("unspecified->(mta5|mta6|mta7).am0.yahoodns.net")
        );
        assert_eq!(
            deferral.nodeid.as_deref(),
            Some("557f3ad4-2c8c-11ee-976e-782d7e12e173")
        );
        assert_eq!(
            deferral.response,
            Some(LogResponse {
                code: Some(421),
                content: Some(
                    "[TSS04] Messages from a.b.c.d temporarily deferred due to user complaints"
                        .into()
                ),
                enhanced_code: Some("4.7.0".into()),
                command: Some(".".into()),
            })
        );
        assert_eq!(deferral.status(), "deferred");
        assert_eq!(deferral.counter_name(), Some("kumomta_log_deferred_total"));
        assert_eq!(
            deferral.counter_labels(),
            Labels::from([("queue".to_string(), "something".to_string())])
        );
    }

    #[test]
    fn bodies_as_object_or_array() {
        let lines: Vec<&str> = fixtures::LOG_RECORDS
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        let batch = format!("[{}]", lines.join(","));
        assert_eq!(
            parse_log_body(batch.as_bytes()).expect("batch"),
            fixture_records()
        );
        assert_eq!(parse_log_body(b"[]").expect("empty batch"), vec![]);
        let minimal =
            parse_log_body(br#"{"type":"Delivery","id":"m1","timestamp":0}"#).expect("minimal");
        assert_eq!(minimal[0].queue, None);
        assert_eq!(minimal[0].response, None);
    }

    #[test]
    fn errors_name_the_element_and_field() {
        const GOOD: &str = r#"{"type":"Delivery","id":"a","timestamp":1}"#;
        // A record whose members are GOOD's followed by `extra`.
        let with = |extra: &str| format!(r#"{{"type":"Delivery","id":"a","timestamp":1,{extra}}}"#);
        let cases: Vec<(String, &str)> = vec![
            (
                "not json".into(),
                "body: not valid JSON: expected ident at line 1 column 2",
            ),
            (
                "42".into(),
                "body: expected a JSON object or an array of objects",
            ),
            (format!("[{GOOD},1]"), "[1]: expected a JSON object"),
            (
                format!(r#"[{GOOD},{GOOD},{GOOD},{{"type":"Delivery","id":"a","timestamp":"x"}}]"#),
                "[3].timestamp: expected an integer (unix seconds)",
            ),
            (
                r#"{"type":"Delivery","id":"a","timestamp":1.5}"#.into(),
                "timestamp: expected an integer (unix seconds)",
            ),
            (
                r#"{"type":"Delivery","id":"a"}"#.into(),
                "timestamp: is missing",
            ),
            (
                r#"{"type":"Delivery","id":"a","timestamp":99999999999999}"#.into(),
                "timestamp: is out of range",
            ),
            (r#"{"id":"a","timestamp":1}"#.into(), "type: is missing"),
            (
                r#"{"type":"","id":"a","timestamp":1}"#.into(),
                "type: must not be empty",
            ),
            (
                r#"{"type":7,"id":"a","timestamp":1}"#.into(),
                "type: expected a string",
            ),
            (
                r#"{"type":"Delivery","id":"","timestamp":1}"#.into(),
                "id: must not be empty",
            ),
            (
                format!("[{GOOD},{}]", with(r#""recipient":["x"]"#)),
                "[1].recipient: expected a string",
            ),
            (
                with(r#""num_attempts":-1"#),
                "num_attempts: expected an integer from 0 to 4294967295",
            ),
            (
                with(r#""response":{"code":"250"}"#),
                "response.code: expected an integer from 0 to 65535",
            ),
            (
                format!("[{}]", with(r#""response":{"enhanced_code":{"class":4}}"#)),
                concat!(
                    "[0].response.enhanced_code: ",
                    "expected an object with integer class, subject and detail"
                ),
            ),
            (
                with(r#""response":"250 ok""#),
                "response: expected an object",
            ),
        ];
        for (body, expected) in cases {
            let err = parse_log_body(body.as_bytes()).expect_err(&body);
            assert_eq!(err.to_string(), expected, "{body}");
        }
    }

    #[test]
    fn statuses_and_counters() {
        let cases = [
            ("Reception", "received", Some("kumomta_log_received_total")),
            ("Delivery", "delivered", Some("kumomta_log_delivered_total")),
            ("Bounce", "bounced", Some("kumomta_log_bounced_total")),
            ("AdminBounce", "bounced", Some("kumomta_log_bounced_total")),
            ("OOB", "bounced", Some("kumomta_log_bounced_total")),
            (
                "TransientFailure",
                "deferred",
                Some("kumomta_log_deferred_total"),
            ),
            ("Expiration", "expired", Some("kumomta_log_expired_total")),
            ("Feedback", "complaint", None),
            ("Rejection", "rejected", None),
            ("AdminRebind", "rebound", None),
            ("DeferredInjectionRebind", "queued", None),
            ("Delayed", "delayed", None),
            ("SomethingNew", "something_new", None),
        ];
        for (kind, status, counter) in cases {
            let body = format!(r#"{{"type":"{kind}","id":"m","timestamp":1,"queue":""}}"#);
            let record = &parse_log_body(body.as_bytes()).expect(kind)[0];
            assert_eq!(record.status(), status, "{kind}");
            assert_eq!(record.counter_name(), counter, "{kind}");
            assert_eq!(record.counter_labels(), Labels::new(), "{kind}");
            assert_eq!(
                serde_json::to_value(&record.kind).expect("serializes"),
                json!(kind),
                "{kind}"
            );
        }
    }

    #[test]
    fn event_data_follows_the_protocol() {
        let records = fixture_records();
        assert_eq!(
            records[1].event_data(),
            json!({
                "message_id": "1d98076abbbc11ed940250ebf67f93bd",
                "status": "deferred",
                "queue": "something",
                "timestamp": "2023-11-14T22:13:20.000Z",
                "details": {
                    "type": "TransientFailure",
                    "recipient": "user@yahoo.com",
                    "sender": "user@example.com",
                    "site": "unspecified->(mta5|mta6|mta7).am0.yahoodns.net",
                    "response": {
                        "code": 421,
                        "content": "[TSS04] Messages from a.b.c.d temporarily deferred due to user complaints",
                        "enhanced_code": "4.7.0",
                        "command": ".",
                    },
                    "num_attempts": 1,
                    "bounce_classification": "Uncategorized",
                    "egress_pool": null,
                    "egress_source": null,
                },
            })
        );
    }

    #[test]
    fn dedup_keys_separate_attempts_and_recipients_only() {
        let base = r#"{"type":"TransientFailure","id":"m","timestamp":100,"num_attempts":1,
                       "recipient":"a@x.com","queue":"x.com"}"#;
        let key = |body: &str| parse_log_body(body.as_bytes()).expect(body)[0].dedup_key();
        let original = key(base);
        assert_eq!(original.len(), 32);
        assert_eq!(original, key(base), "stable");
        // Same record with other fields (or field order) differing is the same record.
        assert_eq!(
            original,
            key(
                r#"{"queue":"y.com","recipient":"a@x.com","num_attempts":1,"timestamp":100,
                    "id":"m","type":"TransientFailure","size":5}"#
            )
        );
        for other in [
            base.replace("\"num_attempts\":1", "\"num_attempts\":2"),
            base.replace("a@x.com", "b@x.com"),
            base.replace("TransientFailure", "Delivery"),
            base.replace("100", "101"),
            base.replace("\"id\":\"m\"", "\"id\":\"n\""),
            base.replace(",\"num_attempts\":1", ""),
        ] {
            assert_ne!(original, key(&other), "{other}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(body in "\\PC*") {
            let _ = parse_log_body(body.as_bytes());
        }

        #[test]
        fn arbitrary_json_values_never_panic(value in json_value()) {
            let body = serde_json::to_vec(&value).expect("serializes");
            let _ = parse_log_body(&body);
            let record = json!({
                "type": "Delivery",
                "id": "m",
                "timestamp": 1,
                "response": value.clone(),
                "num_attempts": value.clone(),
                "queue": value,
            });
            if let Ok(records) = parse_log_body(&serde_json::to_vec(&record).expect("serializes")) {
                for record in records {
                    record.event_data();
                    record.dedup_key();
                }
            }
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
                .map(Value::Number)
                .unwrap_or(Value::Null)),
            "[a-zA-Z.]{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    "type|id|timestamp|code|class|subject|detail|enhanced_code|content",
                    inner,
                    0..4
                )
                .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }
}
