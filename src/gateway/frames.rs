//! The JSON frames of `/ws` (protocol.md, "Envelope").

use chrono::{SecondsFormat, TimeZone, Utc};
use serde::Serialize;
use serde_json::Value;

/// Longest client-chosen `id` echoed back.
pub const MAX_ID_BYTES: usize = 128;

/// A client frame: `{"type": "...", "id": "...", "payload": {...}}`.
#[derive(Debug)]
pub struct ClientFrame {
    pub kind: String,
    pub id: Option<Value>,
    pub payload: Value,
}

/// Why a frame is a protocol error (close 4000).
#[derive(Debug)]
pub struct Malformed(pub &'static str);

impl ClientFrame {
    pub fn parse(text: &str) -> Result<ClientFrame, Malformed> {
        let Ok(Value::Object(mut object)) = serde_json::from_str::<Value>(text) else {
            return Err(Malformed("not_a_json_object"));
        };
        let Some(Value::String(kind)) = object.remove("type") else {
            return Err(Malformed("no_type"));
        };
        Ok(ClientFrame {
            kind,
            id: object.remove("id"),
            payload: object.remove("payload").unwrap_or(Value::Null),
        })
    }

    /// The id to echo, when it is one a reply can carry (a short string or a number).
    pub fn reply_id(&self) -> Result<Option<Value>, String> {
        match &self.id {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() <= MAX_ID_BYTES => Ok(self.id.clone()),
            Some(Value::Number(_)) => Ok(self.id.clone()),
            Some(_) => Err(format!(
                "id must be a string of at most {MAX_ID_BYTES} bytes or a number"
            )),
        }
    }
}

#[derive(Serialize)]
struct ServerFrame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a Value>,
    ts: String,
    payload: &'a Value,
}

/// A server frame (every type but `event`).
pub fn server_frame(kind: &str, id: Option<&Value>, payload: &Value) -> String {
    serde_json::to_string(&ServerFrame {
        kind,
        id,
        ts: now_ts(),
        payload,
    })
    .unwrap_or_default()
}

pub fn error_frame(id: Option<&Value>, code: &str, message: &str) -> String {
    server_frame(
        "error",
        id,
        &serde_json::json!({"code": code, "message": message}),
    )
}

/// RFC 3339 with milliseconds, UTC.
pub fn now_ts() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn ts_of_millis(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_envelope_and_refuses_the_rest() {
        let f = ClientFrame::parse(r#"{"type":"ping","id":"c3"}"#).unwrap();
        assert_eq!(f.kind, "ping");
        assert_eq!(f.reply_id().unwrap(), Some(Value::from("c3")));
        for bad in ["", "[]", "1", "{}", r#"{"type":1}"#, "{nope"] {
            assert!(ClientFrame::parse(bad).is_err(), "{bad}");
        }
        let f = ClientFrame::parse(r#"{"type":"ping","id":{"a":1}}"#).unwrap();
        assert!(f.reply_id().is_err());
    }
}
