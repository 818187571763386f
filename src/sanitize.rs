//! Text that came from outside (a remote object, the machine store, a
//! server's message) made safe to print: control characters, newlines
//! included, are escaped, so an escape sequence in a bucket's record can
//! neither clear the terminal, retitle it nor forge a line of output.
//! Owns only that rule; callers decide which text came from outside.

/// `text` with every control character (C0, DEL, C1) written as `\xNN` or
/// `\u{NNNN}`; a backslash stays as it is. Printable Unicode is kept.
pub(crate) fn escape_controls(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            let n = c as u32;
            if n < 0x80 {
                out.push_str(&format!("\\x{n:02x}"));
            } else {
                out.push_str(&format!("\\u{{{n:04x}}}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_the_rest_kept() {
        assert_eq!(escape_controls("plain é ✓"), "plain é ✓");
        assert_eq!(
            escape_controls("a\x1b[2Jb\nc\u{9b}d\x07"),
            "a\\x1b[2Jb\\x0ac\\u{009b}d\\x07"
        );
        assert_eq!(escape_controls("\x1b]0;title\x07"), "\\x1b]0;title\\x07");
    }
}
