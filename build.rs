//! Embeds the web client (`web/`) in `chatserver`, so that the binary alone serves it
//! (src/http/files.rs). Writes `$OUT_DIR/web_files.rs`: a table of (URL path, bytes) with
//! `include_bytes!` of every servable file under `web/`.
//!
//! Served: files whose extension has a Content-Type in src/http/files.rs (html, css, js, ...).
//! Skipped: dot files, `node_modules/`, the client's own tests (`tests/`, `test/`, `e2e/`) and
//! its tooling (`package*.json`, `*.config.*`), so that what the browser never asks for is not
//! in the binary. Cargo re-runs this when anything under `web/` changes.

use std::fmt::Write as _;
use std::path::Path;

/// Extensions that are served (keep in step with `content_type` in src/http/files.rs).
const SERVED: &[&str] = &[
    "html",
    "htm",
    "css",
    "js",
    "mjs",
    "json",
    "map",
    "svg",
    "png",
    "jpg",
    "jpeg",
    "gif",
    "ico",
    "webp",
    "txt",
    "woff",
    "woff2",
    "webmanifest",
    "wasm",
];
/// Directories never embedded.
const SKIPPED_DIRS: &[&str] = &["node_modules", "tests", "test", "e2e", "playwright-report"];

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    println!("cargo:rerun-if-changed=web");
    let mut files = Vec::new();
    if root.is_dir() {
        walk(&root, &root, &mut files);
    }
    files.sort();
    let mut out = String::from("&[\n");
    for (url, path) in &files {
        writeln!(out, "    ({url:?}, include_bytes!({path:?}) as &[u8]),").unwrap();
    }
    out.push(']');
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("web_files.rs");
    std::fs::write(dest, out).expect("write web_files.rs");
}

/// Collects (URL path, absolute file path) of the servable files under `dir`.
fn walk(root: &Path, dir: &Path, files: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            if !SKIPPED_DIRS.contains(&name.as_str()) {
                walk(root, &path, files);
            }
            continue;
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let tooling = name.starts_with("package") || name.contains(".config.");
        if tooling || !SERVED.contains(&ext.to_ascii_lowercase().as_str()) {
            continue;
        }
        let rel = path.strip_prefix(root).expect("under web/");
        let url = format!("/{}", rel.to_string_lossy().replace('\\', "/"));
        files.push((url, path.to_string_lossy().into_owned()));
    }
}
