//! The routing fields of a request, read without copying: what the server's hot path needs.

use crate::request::MAX_CMID_BYTES;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// The routing fields of a request, read in one pass over the frame without copying: each is
/// kept raw and typed only when a handler needs it, so a field that a message does not use can
/// never fail that message. Unknown fields are skipped.
#[derive(Debug, Default, Deserialize)]
pub struct Envelope<'a> {
    /// The message id (an integer when valid).
    #[serde(borrow, default)]
    pub msgid: Option<&'a RawValue>,
    /// The client's request tag, echoed verbatim in the ack or error reply.
    #[serde(borrow, default, deserialize_with = "present")]
    /// Present-but-null is `Some("null")`: any JSON value, `null` included, is echoed.
    pub reqid: Option<&'a RawValue>,
    /// The sender's id as the client claims it (never trusted).
    #[serde(borrow, default)]
    pub id: Option<&'a RawValue>,
    /// The sender's name as the client claims it (never trusted).
    #[serde(borrow, default)]
    pub name: Option<&'a RawValue>,
    /// ONE_CHAT's receiver.
    #[serde(borrow, default)]
    pub toid: Option<&'a RawValue>,
    /// GROUP_CHAT's group.
    #[serde(borrow, default)]
    pub groupid: Option<&'a RawValue>,
    /// A chat's text (must be a string).
    #[serde(borrow, default)]
    pub msg: Option<&'a RawValue>,
    /// A chat's time as the sender stamped it (the server stamps its own when this is not a
    /// string).
    #[serde(borrow, default)]
    pub time: Option<&'a RawValue>,
    /// A chat's client message id (new; a string of at most
    /// [`MAX_CMID_BYTES`](crate::request::MAX_CMID_BYTES): see [`cmid_field`]).
    /// Present-but-null is `Some("null")`, so that it is refused rather than taken as absent.
    #[serde(borrow, default, deserialize_with = "present")]
    pub cmid: Option<&'a RawValue>,
}

/// A field that is present, whatever its value (`null` included).
fn present<'de, D>(d: D) -> Result<Option<&'de RawValue>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    <&RawValue>::deserialize(d).map(Some)
}

impl Envelope<'_> {
    /// The msgid as an integer, if present and integral.
    pub fn msgid(&self) -> Option<i64> {
        self.msgid
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
    }
}

/// Reads a required integer field from an [`Envelope`]; `Err` names the field.
pub fn int_field(raw: Option<&RawValue>, field: &str) -> Result<i64, String> {
    match raw {
        None => Err(format!("missing field `{field}`")),
        Some(r) => serde_json::from_str(r.get())
            .map_err(|_| format!("field `{field}` must be an integer, got {}", r.get())),
    }
}

/// Reads the optional `cmid` of an [`Envelope`]: `None` when absent, borrowed when the
/// string has no escapes; `Err` names the field when it is not a string, empty, or longer
/// than [`MAX_CMID_BYTES`] (after unescaping).
pub fn cmid_field(raw: Option<&RawValue>) -> Result<Option<Cow<'_, str>>, String> {
    let Some(r) = raw else { return Ok(None) };
    let text = r.get();
    let cmid: Cow<str> = if let Ok(s) = serde_json::from_str::<&str>(text) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(
            serde_json::from_str::<String>(text)
                .map_err(|_| format!("field `cmid` must be a string, got {text}"))?,
        )
    };
    if cmid.is_empty() {
        // An empty id would name every chat that carries one: all but the first would be
        // taken for retries and never stored.
        return Err("field `cmid` must not be empty".to_string());
    }
    if cmid.len() > MAX_CMID_BYTES {
        return Err(format!(
            "field `cmid` must be at most {MAX_CMID_BYTES} bytes, got {}",
            cmid.len()
        ));
    }
    Ok(Some(cmid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmid_is_borrowed_when_plain_and_checked() {
        let frame = r#"{"msgid":6,"toid":2,"msg":"x","cmid":"a-1"}"#;
        let env: Envelope = serde_json::from_str(frame).unwrap();
        let cmid = cmid_field(env.cmid).unwrap();
        assert!(matches!(cmid, Some(Cow::Borrowed("a-1"))), "{cmid:?}");
        let env: Envelope = serde_json::from_str(r#"{"cmid":"a\"b"}"#).unwrap();
        assert_eq!(cmid_field(env.cmid).unwrap().as_deref(), Some("a\"b"));
        let env: Envelope = serde_json::from_str(r#"{"msgid":6}"#).unwrap();
        assert_eq!(cmid_field(env.cmid).unwrap(), None);
        let env: Envelope = serde_json::from_str(r#"{"cmid":null}"#).unwrap();
        assert!(
            cmid_field(env.cmid).unwrap_err().contains("`cmid`"),
            "null is no string"
        );
        let env: Envelope = serde_json::from_str(r#"{"cmid":17}"#).unwrap();
        assert!(cmid_field(env.cmid).unwrap_err().contains("`cmid`"));
        let long = format!(r#"{{"cmid":"{}"}}"#, "x".repeat(65));
        let env: Envelope = serde_json::from_str(&long).unwrap();
        assert!(cmid_field(env.cmid).unwrap_err().contains("64 bytes"));
        let env: Envelope = serde_json::from_str(r#"{"cmid":""}"#).unwrap();
        assert!(cmid_field(env.cmid).unwrap_err().contains("empty"));
    }
}
