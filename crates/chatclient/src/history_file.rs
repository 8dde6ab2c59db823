//! Where the line history is kept between runs: `$XDG_DATA_HOME/clusterchat/history`, by
//! default `~/.local/share/clusterchat/history` (the XDG base directory rules). Lines that hold
//! a password are never added to the history (see
//! [`crate::command::Command::may_keep_in_history`]), so they never reach this file either.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The history file of this user, from the environment; `None` without a usable home.
pub fn path() -> Option<PathBuf> {
    path_from(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME"))
}

/// The history file for these values of `XDG_DATA_HOME` and `HOME`. A relative or empty
/// `XDG_DATA_HOME` is ignored, as the XDG specification says.
fn path_from(xdg_data_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let absolute = |v: OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    let data = match xdg_data_home.and_then(absolute) {
        Some(dir) => dir,
        None => home.and_then(absolute)?.join(".local").join("share"),
    };
    Some(data.join("clusterchat").join("history"))
}

/// Creates the file's folder (only its owner may enter the last one: chat lines are private).
pub fn prepare(file: &Path) -> std::io::Result<()> {
    let Some(dir) = file.parent() else {
        return Ok(());
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(xdg: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
        path_from(xdg.map(OsString::from), home.map(OsString::from))
    }

    #[test]
    fn xdg_data_home_first_then_the_home_folder() {
        assert_eq!(
            p(Some("/data"), Some("/home/ann")),
            Some(PathBuf::from("/data/clusterchat/history"))
        );
        let default = Some(PathBuf::from("/home/ann/.local/share/clusterchat/history"));
        assert_eq!(p(None, Some("/home/ann")), default);
        assert_eq!(p(Some(""), Some("/home/ann")), default);
        assert_eq!(p(Some("relative/dir"), Some("/home/ann")), default);
        assert_eq!(p(None, None), None);
        assert_eq!(p(None, Some("")), None);
    }

    #[test]
    fn the_folder_is_made_private() {
        let dir = std::env::temp_dir().join(format!("cc-hist-{}", std::process::id()));
        let file = dir.join("a/b/history");
        prepare(&file).unwrap();
        assert!(file.parent().unwrap().is_dir());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file.parent().unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
