//! The rule for user and group names: trimmed, 1 to 50 characters, no control characters (C0,
//! DEL, C1), so a name can never move a terminal's cursor, retitle it or clear it.

use crate::store::names::MAX_NAME_CHARS;

/// `raw` trimmed, if it is a valid name; else the sentence saying why not. `what` names the
/// field in that sentence ("name", "group name").
pub(super) fn check_name<'a>(raw: &'a str, what: &str) -> Result<&'a str, String> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "the {what} must have 1 to {MAX_NAME_CHARS} characters"
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the {what} must not contain control characters (found U+{:04X})",
            u32::from(c)
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn trimmed_and_bounded() {
        assert_eq!(check_name("  alice \t", "name"), Ok("alice"));
        assert_eq!(
            check_name(&"é".repeat(50), "name").unwrap().chars().count(),
            50
        );
        assert!(check_name(&"é".repeat(51), "name").is_err());
        assert!(check_name(" \n ", "name").unwrap_err().contains("1 to 50"));
    }

    #[test]
    fn control_characters_are_refused() {
        for bad in [
            "\x1b]0;PWNED\x07\x1b[2J\x1b[31m SYSTEM",
            "a\rb",
            "a\nb",
            "a\tb",
            "a\u{7f}b",
            "a\u{85}b",
            "a\u{9b}31mb",
            "a\0b",
        ] {
            let e = check_name(bad, "group name").unwrap_err();
            assert!(
                e.contains("group name must not contain control"),
                "{bad:?}: {e}"
            );
        }
        assert!(check_name("Zoë 🦀 李", "name").is_ok());
    }
}
