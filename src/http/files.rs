//! The web client's files, embedded at compile time by build.rs from `web/`, and their
//! Content-Types.

/// (URL path, contents) of every embedded file, sorted by path.
static FILES: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/web_files.rs"));

/// The embedded file for a request path (its query string already cut off): `/` is
/// `/index.html`, a path ending in `/` its `index.html`. `None`: not embedded (404).
pub(crate) fn lookup(path: &str) -> Option<(&'static [u8], &'static str)> {
    let owned;
    let path = if path.ends_with('/') {
        owned = format!("{path}index.html");
        owned.as_str()
    } else {
        path
    };
    let i = FILES.binary_search_by(|(p, _)| (*p).cmp(path)).ok()?;
    let (p, body) = FILES[i];
    Some((body, content_type(p)))
}

/// The Content-Type of a file, by extension (the extensions build.rs embeds).
pub(crate) fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "wasm" => "application/wasm",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_the_embedded_index_page() {
        let (body, ty) = lookup("/").expect("web/index.html is embedded");
        assert_eq!(ty, "text/html; charset=utf-8");
        let on_disk =
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/web/index.html")).unwrap();
        assert_eq!(body, on_disk.as_slice());
        assert_eq!(lookup("/index.html").map(|f| f.0), Some(body));
    }

    #[test]
    fn unknown_paths_and_escapes_are_not_found() {
        assert!(lookup("/no-such-file.js").is_none());
        assert!(lookup("/../Cargo.toml").is_none());
        assert!(lookup("/build.rs").is_none());
    }
}
