//! The static files of the UI, embedded at compile time.
//!
//! A hand-written table rather than `rust-embed`: twenty files do not need a derive macro and its
//! build-time folder walk, and the table makes the served set explicit (nothing is served by
//! accident because it happened to sit in the folder).

/// One embedded file.
pub(crate) struct Asset {
    /// Path under `/ui/`.
    pub path: &'static str,
    pub body: &'static [u8],
    pub content_type: &'static str,
    /// A strong validator: the content's FNV-1a hash, computed at compile time.
    pub etag: &'static str,
}

/// FNV-1a 64 of `bytes`; const so every ETag is computed by the compiler.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// `"` + 16 hex digits + `"`, as a const byte array (ETags are quoted strings).
const fn etag_bytes(bytes: &[u8]) -> [u8; 18] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = fnv1a(bytes);
    let mut out = [b'"'; 18];
    let mut i = 0;
    while i < 16 {
        out[1 + i] = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out
}

macro_rules! assets {
    ($($path:literal => $ty:expr,)*) => {
        pub(crate) static ASSETS: &[Asset] = &[$(
            Asset {
                path: $path,
                body: include_bytes!(concat!("../ui/", $path)),
                content_type: $ty,
                etag: {
                    const TAG: [u8; 18] = etag_bytes(include_bytes!(concat!("../ui/", $path)));
                    match std::str::from_utf8(&TAG) {
                        Ok(s) => s,
                        Err(_) => panic!("ETag is ASCII"),
                    }
                },
            },
        )*];
    };
}

const JS: &str = "text/javascript; charset=utf-8";

assets! {
    "index.html" => "text/html; charset=utf-8",
    "app.css" => "text/css; charset=utf-8",
    "favicon.svg" => "image/svg+xml",
    "js/main.js" => JS,
    "js/api.js" => JS,
    "js/chart.js" => JS,
    "js/dom.js" => JS,
    "js/format.js" => JS,
    "js/state.js" => JS,
    "js/complete.js" => JS,
    "js/pages/overview.js" => JS,
    "js/pages/metrics.js" => JS,
    "js/pages/logs.js" => JS,
    "js/pages/alerts.js" => JS,
    "js/pages/services.js" => JS,
    "js/pages/dashboards.js" => JS,
}

/// The embedded file at `path` (relative to `/ui/`).
pub(crate) fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_differ_by_content_and_are_quoted() {
        let a = find("js/main.js").unwrap();
        let b = find("js/api.js").unwrap();
        assert_ne!(a.etag, b.etag);
        assert!(a.etag.starts_with('"') && a.etag.ends_with('"') && a.etag.len() == 18);
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn every_module_import_is_embedded() {
        // A module imported by another but missing from the table would fail only in a browser.
        for asset in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let text = std::str::from_utf8(asset.body).unwrap();
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let spec = line.split(['\'', '"']).nth(1).unwrap();
                let base = asset.path.rsplit_once('/').map_or("", |(d, _)| d);
                let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
                for seg in spec.split('/') {
                    match seg {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        s => parts.push(s),
                    }
                }
                let resolved = parts.join("/");
                assert!(
                    find(&resolved).is_some(),
                    "{} imports {spec} ({resolved}), not embedded",
                    asset.path
                );
            }
        }
    }
}
