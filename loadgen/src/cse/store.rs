//! The simulated IN-CSE's resource tree, in memory. Resources are kept by their structured
//! CSE-relative path (`cse-in/Cdev/cnt0/cin_12`) in shards chosen by the AE the path belongs to, so
//! one device's requests take one shard lock and devices on other cores rarely meet. An `ri` index
//! serves unstructured addressing. The CSEBase itself is not stored: it has no state a device can
//! change.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use m2m_primitive::{Map, Rsc, Value};

/// One resource: the attributes it has on the wire, plus the tree links.
#[derive(Debug, Clone)]
pub struct Resource {
    pub ty: u32,
    /// Attributes in short names, including `ty`, `ri`, `rn`, `pi`, `ct`, `lt`.
    pub attrs: Map,
    /// Child resource names, oldest first.
    pub children: Vec<String>,
    /// The names of the children that are subscriptions (checked on every child creation, so kept
    /// apart from the possibly long list of contentInstances).
    pub subscriptions: Vec<String>,
    /// The AE-ID of the AE this resource lives under (privileges).
    pub owner: String,
}

impl Resource {
    pub fn ri(&self) -> &str {
        self.attrs.get("ri").and_then(Value::as_str).unwrap_or("")
    }
}

/// How a `to` was resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Addr {
    CseBase,
    /// A stored resource, by structured path.
    Path(String),
    /// `<container>/la` or `<container>/ol` (latest / oldest contentInstance).
    Virtual {
        container: String,
        latest: bool,
    },
}

pub struct Store {
    pub csi: String,
    pub cb_rn: String,
    shards: Vec<Mutex<HashMap<String, Resource>>>,
    ri_index: Vec<Mutex<HashMap<String, String>>>,
    counter: AtomicU64,
    hasher: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("csi", &self.csi).finish()
    }
}

pub type Shard = HashMap<String, Resource>;

impl Store {
    pub fn new(csi: &str, cb_rn: &str, shards: usize) -> Self {
        Self {
            csi: csi.to_string(),
            cb_rn: cb_rn.to_string(),
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            ri_index: (0..shards.max(1))
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            counter: AtomicU64::new(1),
            hasher: Default::default(),
        }
    }

    /// The CSEBase's resource ID (its CSE-ID without the slash).
    pub fn cb_ri(&self) -> &str {
        self.csi.trim_start_matches('/')
    }

    fn index_of(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) % self.shards.len()
    }

    /// The shard holding everything under the AE that `path` belongs to.
    pub fn shard_for(&self, path: &str) -> std::sync::MutexGuard<'_, Shard> {
        let ae = path.split('/').nth(1).unwrap_or("");
        self.shards[self.index_of(ae)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub fn next_id(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    pub fn index_ri(&self, ri: &str, path: &str) {
        self.ri_index[self.index_of(ri)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ri.to_string(), path.to_string());
    }

    pub fn unindex_ri(&self, ri: &str) {
        self.ri_index[self.index_of(ri)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(ri);
    }

    pub fn path_of_ri(&self, ri: &str) -> Option<String> {
        self.ri_index[self.index_of(ri)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(ri)
            .cloned()
    }

    /// Resolve a request's `to` (ONEM2M.md §5.2): SP-relative and absolute forms of this CSE,
    /// structured (`cse-in/…`, `-/…`) and unstructured (`<ri>/…`) IDs, virtual `la`/`ol`.
    pub fn resolve(&self, to: &str) -> Result<Addr, (Rsc, String)> {
        let rel = if let Some(rest) = to.strip_prefix("//") {
            // //sp-fqdn/csi/… → csi/…
            let rest = rest.split_once('/').map(|(_, r)| r).unwrap_or("");
            self.strip_csi(rest, to, "Absolute")?
        } else if let Some(rest) = to.strip_prefix('/') {
            self.strip_csi(rest, to, "SP-relative")?
        } else {
            to.to_string()
        };
        let (first, rest) = rel.split_once('/').unwrap_or((rel.as_str(), ""));
        let path = if first == self.cb_rn || first == "-" {
            if rest.is_empty() {
                return Ok(Addr::CseBase);
            }
            format!("{}/{rest}", self.cb_rn)
        } else if first == self.cb_ri() && rest.is_empty() {
            return Ok(Addr::CseBase);
        } else if first.is_empty() {
            return Err((Rsc::BAD_REQUEST, format!("invalid target {to:?}")));
        } else {
            let base = self
                .path_of_ri(first)
                .ok_or_else(|| (Rsc::NOT_FOUND, format!("resource {to:?} not found")))?;
            if rest.is_empty() {
                base
            } else {
                format!("{base}/{rest}")
            }
        };
        if self.shard_for(&path).contains_key(&path) {
            return Ok(Addr::Path(path));
        }
        if let Some((parent, last)) = path.rsplit_once('/') {
            if last == "la" || last == "ol" {
                let is_container = self
                    .shard_for(parent)
                    .get(parent)
                    .is_some_and(|r| r.ty == m2m_primitive::model::resource_type::CONTAINER);
                if is_container {
                    return Ok(Addr::Virtual {
                        container: parent.to_string(),
                        latest: last == "la",
                    });
                }
            }
        }
        Err((Rsc::NOT_FOUND, format!("resource {to:?} not found")))
    }

    fn strip_csi(&self, rest: &str, to: &str, kind: &str) -> Result<String, (Rsc, String)> {
        let (csi, tail) = rest.split_once('/').unwrap_or((rest, ""));
        if csi != self.cb_ri() {
            return Err((
                Rsc::TARGET_NOT_REACHABLE,
                format!("{to:?} is not on this CSE"),
            ));
        }
        if tail.is_empty() {
            return Err((Rsc::BAD_REQUEST, format!("{kind} ID is too short: {to:?}")));
        }
        Ok(tail.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(paths: &[(&str, u32, &str)]) -> Store {
        let s = Store::new("/id-in", "cse-in", 4);
        for (path, ty, ri) in paths {
            let mut attrs = Map::new();
            attrs.insert("ri", Value::String(ri.to_string()));
            s.shard_for(path).insert(
                path.to_string(),
                Resource {
                    ty: *ty,
                    attrs,
                    children: vec![],
                    subscriptions: vec![],
                    owner: "Cdev".into(),
                },
            );
            s.index_ri(ri, path);
        }
        s
    }

    #[test]
    fn resolves_the_forms_acme_accepts() {
        let s = store_with(&[("cse-in/dev", 2, "Cdev"), ("cse-in/dev/cnt0", 3, "cnt1")]);
        let p = |x: &str| Ok(Addr::Path(x.to_string()));
        assert_eq!(s.resolve("cse-in"), Ok(Addr::CseBase));
        assert_eq!(s.resolve("-"), Ok(Addr::CseBase));
        assert_eq!(s.resolve("id-in"), Ok(Addr::CseBase));
        assert_eq!(s.resolve("cse-in/dev/cnt0"), p("cse-in/dev/cnt0"));
        assert_eq!(s.resolve("-/dev"), p("cse-in/dev"));
        assert_eq!(s.resolve("cnt1"), p("cse-in/dev/cnt0"));
        assert_eq!(s.resolve("/id-in/cse-in/dev"), p("cse-in/dev"));
        assert_eq!(
            s.resolve("//acme.example.com/id-in/cse-in/dev"),
            p("cse-in/dev")
        );
        assert_eq!(
            s.resolve("cse-in/dev/cnt0/la"),
            Ok(Addr::Virtual {
                container: "cse-in/dev/cnt0".into(),
                latest: true
            })
        );
        assert_eq!(s.resolve("/id-in").unwrap_err().0, Rsc::BAD_REQUEST);
        assert_eq!(
            s.resolve("//acme.example.com/id-in").unwrap_err().0,
            Rsc::BAD_REQUEST
        );
        assert_eq!(s.resolve("cse-in/nobody").unwrap_err().0, Rsc::NOT_FOUND);
        assert_eq!(s.resolve("cse-in/dev/la").unwrap_err().0, Rsc::NOT_FOUND);
        assert_eq!(
            s.resolve("/id-other/cse-in").unwrap_err().0,
            Rsc::TARGET_NOT_REACHABLE
        );
    }
}
