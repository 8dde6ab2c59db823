//! The routing fields of a request, read without copying: what the server's hot path needs.

use serde::Deserialize;
use serde_json::value::RawValue;

/// The routing fields of a request, read in one pass over the frame without copying: each is
/// kept raw and typed only when a handler needs it, so a field that a message does not use can
/// never fail that message. Unknown fields are skipped.
#[derive(Debug, Default, Deserialize)]
pub struct Envelope<'a> {
    /// The message id (an integer when valid).
    #[serde(borrow, default)]
    pub msgid: Option<&'a RawValue>,
    /// The client's request tag, echoed verbatim in the ack or error reply.
    #[serde(borrow, default)]
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
