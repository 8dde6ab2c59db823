//! Unique user names: the key a name is compared by, and the upgrade of a database whose users
//! may share names (every database before names were unique), decided in plain Rust so that
//! both backends upgrade alike.
//!
//! Names are compared case-insensitively, as the original's MySQL collation did: each user row
//! keeps `name_key` = the name trimmed and lowercased (Unicode), under a UNIQUE index. Accents
//! and other differences still count ("Zoë" and "Zoe" are two names), on both backends alike.
//!
//! The upgrade gives every row without a key one; where the key is taken (by a user with a key,
//! or by an earlier row of the same upgrade: the lower id keeps its name), the later user is
//! renamed `<name>#<id>` (cut to fit the 50 characters), and the rename is logged. Nobody
//! loses an account: the renamed user still logs in by id, and by the new name.

pub(crate) mod mysql;
pub(crate) mod sqlite;

use clusterchat_proto::UserId;
use std::collections::HashSet;

/// Longest user name in characters (the `VARCHAR(50)` of the `user` table).
pub const MAX_NAME_CHARS: usize = 50;

/// What a name is compared by: trimmed and lowercased, so "Alice", "alice" and " ALICE " are
/// one name.
pub fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// A user row as the upgrade reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRow {
    /// The user.
    pub id: UserId,
    /// Their name as stored.
    pub name: String,
    /// Their key, `None` until the upgrade gives them one.
    pub key: Option<String>,
}

/// What the upgrade writes to one row that had no key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFix {
    /// The user.
    pub id: UserId,
    /// The name to store: unchanged, or the new name of a renamed user.
    pub name: String,
    /// `name_key(name)`.
    pub key: String,
    /// The name before, when the user is renamed.
    pub renamed_from: Option<String>,
}

/// Gives every row without a key one, renaming the later holders of a taken key; `rows` in
/// any order. Rows that have a key keep it (and their name). A name is kept by the row that
/// has its key already, else by its lowest id; a new name avoids every kept name.
pub fn plan_keys(rows: &[NameRow]) -> Vec<KeyFix> {
    let mut taken: HashSet<String> = rows.iter().filter_map(|r| r.key.clone()).collect();
    let mut todo: Vec<(&NameRow, String)> = rows
        .iter()
        .filter(|r| r.key.is_none())
        .map(|r| (r, name_key(&r.name)))
        .collect();
    todo.sort_by_key(|(r, _)| r.id);
    // First the keepers, so that no new name takes a name someone keeps.
    let keeps: Vec<bool> = todo
        .iter()
        .map(|(_, key)| taken.insert(key.clone()))
        .collect();
    let mut fixes = Vec::with_capacity(todo.len());
    for ((row, key), keep) in todo.into_iter().zip(keeps) {
        if keep {
            fixes.push(KeyFix {
                id: row.id,
                name: row.name.clone(),
                key,
                renamed_from: None,
            });
            continue;
        }
        let name = (1..)
            .map(|n| renamed(&row.name, row.id, n))
            .find(|candidate| !taken.contains(&name_key(candidate)))
            .expect("some suffix is free");
        let key = name_key(&name);
        taken.insert(key.clone());
        fixes.push(KeyFix {
            id: row.id,
            name,
            key,
            renamed_from: Some(row.name.clone()),
        });
    }
    fixes
}

/// The `n`-th candidate new name of user `id`: `<name>#<id>`, then `<name>#<id>.2`, … with the
/// name cut so that the whole fits [`MAX_NAME_CHARS`].
fn renamed(name: &str, id: UserId, n: u32) -> String {
    let suffix = if n == 1 {
        format!("#{id}")
    } else {
        format!("#{id}.{n}")
    };
    let room = MAX_NAME_CHARS.saturating_sub(suffix.chars().count());
    let base: String = name.trim().chars().take(room).collect();
    format!("{}{suffix}", base.trim_end())
}

/// Logs each rename of an upgrade (a warning: an administrator may want to tell the user).
pub fn log_renames(fixes: &[KeyFix]) {
    for f in fixes {
        if let Some(old) = &f.renamed_from {
            log::warn!(
                "user {}: the name {old:?} is taken (names are now unique, compared \
                 case-insensitively); renamed to {:?}",
                f.id,
                f.name
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: UserId, name: &str, key: Option<&str>) -> NameRow {
        NameRow {
            id,
            name: name.into(),
            key: key.map(Into::into),
        }
    }

    #[test]
    fn keys_ignore_case_and_surrounding_space() {
        assert_eq!(name_key(" Alice "), "alice");
        assert_eq!(name_key("ÄRGER"), "ärger");
        assert_ne!(name_key("Zoë"), name_key("Zoe"));
    }

    #[test]
    fn the_lowest_id_keeps_the_name_and_later_ones_are_renamed() {
        let rows = [
            row(7, "Alice", None),
            row(3, "alice", None),
            row(9, "ALICE", None),
            row(4, "bob", None),
        ];
        let fixes = plan_keys(&rows);
        let by_id = |id| fixes.iter().find(|f| f.id == id).unwrap();
        assert_eq!(
            (by_id(3).name.as_str(), by_id(3).key.as_str()),
            ("alice", "alice")
        );
        assert_eq!(by_id(3).renamed_from, None);
        assert_eq!(by_id(7).name, "Alice#7");
        assert_eq!(by_id(7).key, "alice#7");
        assert_eq!(by_id(7).renamed_from.as_deref(), Some("Alice"));
        assert_eq!(by_id(9).name, "ALICE#9");
        assert_eq!(by_id(4).renamed_from, None);
    }

    #[test]
    fn rows_with_a_key_keep_it_and_a_new_name_avoids_every_key() {
        let rows = [
            row(1, "carol", Some("carol")),
            row(2, "carol#5", Some("carol#5")),
            row(5, "Carol", None),
        ];
        let fixes = plan_keys(&rows);
        assert_eq!(fixes.len(), 1);
        assert_eq!(fixes[0].name, "Carol#5.2");
    }

    #[test]
    fn a_name_someone_has_is_never_given_to_another() {
        let rows = [
            row(2, "Alice", None),
            row(1, "alice", None),
            row(5, "alice#2", None),
        ];
        let fixes = plan_keys(&rows);
        let name = |id| fixes.iter().find(|f| f.id == id).unwrap().name.clone();
        assert_eq!(
            (name(1), name(2), name(5)),
            ("alice".into(), "Alice#2.2".into(), "alice#2".into())
        );
    }

    #[test]
    fn a_renamed_long_name_fits() {
        let long = "x".repeat(50);
        let rows = [row(1, &long, None), row(123456, &long.to_uppercase(), None)];
        let fixes = plan_keys(&rows);
        assert_eq!(fixes[1].name.chars().count(), 50);
        assert!(fixes[1].name.ends_with("#123456"));
    }
}
