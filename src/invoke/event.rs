//! The event `lbuild invoke` hands the handler: read from a file or stdin,
//! held to what Lambda accepts (UTF-8 JSON, at most 6 MB), refused as bad
//! input otherwise. Does not deliver it (the bootstrap reads it from its
//! stdin, never from a command line).

use std::io::Read;

/// Lambda's payload limit for a synchronous invocation, request and
/// response alike: 6 MB.
pub(crate) const MAX_PAYLOAD: u64 = 6 * 1024 * 1024;

/// What is wrong with an event; all of it is the user's to fix (exit 2).
#[derive(Debug)]
pub enum EventProblem {
    Unreadable(std::io::Error),
    TooLarge,
    NotUtf8 { offset: usize },
    NotJson(serde_json::Error),
}

impl std::fmt::Display for EventProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventProblem::Unreadable(e) => write!(f, "cannot be read: {e}"),
            EventProblem::TooLarge => write!(
                f,
                "is larger than {MAX_PAYLOAD} bytes (6 MB), Lambda's limit for a synchronous invocation"
            ),
            EventProblem::NotUtf8 { offset } => {
                write!(f, "is not UTF-8 text (invalid byte at offset {offset})")
            }
            EventProblem::NotJson(e) => write!(f, "is not valid JSON: {e}"),
        }
    }
}

impl EventProblem {
    pub fn hint(&self) -> String {
        match self {
            EventProblem::TooLarge => "Lambda refuses such a request: pass a smaller event (put large data in S3 and pass its key)".into(),
            _ => "pass a UTF-8 JSON document with --event FILE, or on stdin with --event -".into(),
        }
    }
}

/// Reads an event argument: a file, `-` for stdin, or nothing (`{}`).
/// Returns the event's text and its name for messages.
pub(super) fn read_event(arg: Option<&str>) -> Result<String, (String, EventProblem)> {
    match arg {
        None => Ok("{}".into()),
        Some("-") => check(std::io::stdin().lock()).map_err(|p| ("(stdin)".into(), p)),
        Some(path) => std::fs::File::open(path)
            .map_err(EventProblem::Unreadable)
            .and_then(check)
            .map_err(|p| (path.to_string(), p)),
    }
}

/// Reads at most one byte past the limit, so a huge or endless input is
/// refused without being buffered.
fn check(input: impl Read) -> Result<String, EventProblem> {
    let mut bytes = Vec::new();
    input
        .take(MAX_PAYLOAD + 1)
        .read_to_end(&mut bytes)
        .map_err(EventProblem::Unreadable)?;
    if bytes.len() as u64 > MAX_PAYLOAD {
        return Err(EventProblem::TooLarge);
    }
    let text = String::from_utf8(bytes).map_err(|e| EventProblem::NotUtf8 {
        offset: e.utf8_error().valid_up_to(),
    })?;
    serde_json::from_str::<serde::de::IgnoredAny>(&text).map_err(EventProblem::NotJson)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(bytes: &[u8]) -> EventProblem {
        check(bytes).unwrap_err()
    }

    #[test]
    fn events_must_be_utf8_json_within_the_limit() {
        assert!(matches!(problem(b"{not json"), EventProblem::NotJson(_)));
        assert!(matches!(
            problem(b"{\"a\": \"\xff\"}"),
            EventProblem::NotUtf8 { offset: 7 }
        ));
        assert_eq!(check(&br#"{"a": 1}"#[..]).unwrap(), r#"{"a": 1}"#);

        // Exactly the limit is accepted, one byte more is not.
        let mut doc = vec![b'"'];
        doc.resize(MAX_PAYLOAD as usize - 1, b'x');
        doc.push(b'"');
        assert_eq!(check(&doc[..]).unwrap().len() as u64, MAX_PAYLOAD);
        doc.insert(1, b'x');
        assert!(matches!(problem(&doc), EventProblem::TooLarge));
        assert!(problem(&doc).to_string().contains("6291456 bytes"));
    }

    #[test]
    fn a_missing_file_is_named_and_no_event_is_an_empty_object() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.json");
        let (name, p) = read_event(missing.to_str()).unwrap_err();
        assert_eq!(name, missing.to_str().unwrap());
        assert!(matches!(p, EventProblem::Unreadable(_)), "{p}");
        assert_eq!(read_event(None).unwrap(), "{}");
    }
}
