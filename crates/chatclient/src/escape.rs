//! What the server sends is shown, never obeyed: control characters in names and messages are
//! printed escaped (`\e`, `\r`, `\x07`, `\u{85}`), so nobody can retitle or clear the
//! terminal, move its cursor, or overwrite a line with `\r` (issue 10, case 8).
//!
//! Control characters are C0 (U+0000–U+001F), DEL (U+007F) and C1 (U+0080–U+009F): what
//! terminals act on. A backslash is left as it is.

use std::borrow::Cow;
use std::fmt::Write;

/// `s` with every control character escaped: for names, times and other one-line fields.
pub fn name(s: &str) -> Cow<'_, str> {
    escape(s, |_| false)
}

/// `s` with every control character escaped except newline and tab: for message text, which
/// may span lines.
pub fn text(s: &str) -> Cow<'_, str> {
    escape(s, |c| c == '\n' || c == '\t')
}

fn escape(s: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() && !keep(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            c if !c.is_control() || keep(c) => out.push(c),
            '\x1b' => out.push_str("\\e"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if u32::from(c) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::{name, text};

    #[test]
    fn the_issues_name_is_shown_harmless() {
        assert_eq!(
            name("\x1b]0;PWNED\x07\x1b[2J\x1b[31m SYSTEM"),
            "\\e]0;PWNED\\x07\\e[2J\\e[31m SYSTEM"
        );
    }

    #[test]
    fn every_control_character_is_escaped() {
        assert_eq!(name("a\rb\nc\td\0e\x7ff"), "a\\rb\\nc\\td\\0e\\x7ff");
        assert_eq!(name("c1: \u{85} \u{9b}31m"), "c1: \\u{85} \\u{9b}31m");
        for c in (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
            let shown = name(&c.to_string()).into_owned();
            assert!(shown.starts_with('\\'), "{c:?} shown as {shown:?}");
            assert!(!shown.chars().any(char::is_control), "{shown:?}");
        }
    }

    #[test]
    fn messages_keep_newlines_and_tabs_only() {
        assert_eq!(
            text("line 1\n\tline 2\r\x1b[2K"),
            "line 1\n\tline 2\\r\\e[2K"
        );
    }

    #[test]
    fn plain_text_is_not_copied() {
        assert!(matches!(name("Zoë 🦀 \\e"), std::borrow::Cow::Borrowed(_)));
        assert!(matches!(text("a\nb"), std::borrow::Cow::Borrowed(_)));
    }
}
