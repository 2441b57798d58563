//! String interning for label names and values: each distinct string is kept once, and a
//! series' labels are a few `u32` pairs. This is most of why the head needs less memory per
//! series than Prometheus' (which keeps a `labels.Labels` of strings per series).

use std::collections::HashMap;
use std::sync::Arc;

/// The id of an interned string.
pub type Sym = u32;

/// Interned strings. Strings are never removed: the set of label names and values seen is
/// bounded by the active series limit times labels per series, and churned values are few
/// compared with the series that carried them.
#[derive(Debug, Default)]
pub struct Symbols {
    ids: HashMap<Arc<str>, Sym, ahash::RandomState>,
    strings: Vec<Arc<str>>,
    bytes: usize,
}

impl Symbols {
    /// The id of `s`, interning it when new.
    pub fn intern(&mut self, s: &str) -> Sym {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.strings.len() as Sym;
        let shared: Arc<str> = Arc::from(s);
        self.bytes += s.len();
        self.strings.push(shared.clone());
        self.ids.insert(shared, id);
        id
    }

    /// The id of `s` if it was interned.
    pub fn get(&self, s: &str) -> Option<Sym> {
        self.ids.get(s).copied()
    }

    /// The string of `id`.
    pub fn resolve(&self, id: Sym) -> &str {
        self.strings.get(id as usize).map_or("", |s| s)
    }

    /// Approximate bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.bytes + self.strings.len() * (16 + 16 + 8)
    }
}
