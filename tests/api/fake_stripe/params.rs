//! Stripe's request encoding: percent-decoding of `application/x-www-form-urlencoded`
//! bodies and query strings, and the bracketed keys serde_qs produces
//! (`items[0][price]`, `metadata[org_id]`, `lookup_keys[]`) read as paths.

use super::state::ApiError;

/// Decodes `a=1&b%5B0%5D=x` into ordered pairs. Never fails: bad escapes are kept
/// literally, as a lenient server would, so the handler can report the bad value.
pub fn parse_urlencoded(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Request parameters with their keys split into path segments:
/// `items[0][price]` is `["items", "0", "price"]`.
#[derive(Clone, Debug, Default)]
pub struct Params {
    entries: Vec<(Vec<String>, String)>,
}

impl Params {
    pub fn new(pairs: &[(String, String)]) -> Params {
        // `lookup_keys[]=a&lookup_keys[]=b` means indices 0 and 1, as in Rails/PHP.
        let mut auto_index: std::collections::HashMap<Vec<String>, usize> = Default::default();
        let entries = pairs
            .iter()
            .map(|(k, v)| {
                let mut path = Vec::new();
                for seg in split_key(k) {
                    if seg.is_empty() {
                        let n = auto_index.entry(path.clone()).or_insert(0);
                        path.push(n.to_string());
                        *n += 1;
                    } else {
                        path.push(seg);
                    }
                }
                (path, v.clone())
            })
            .collect();
        Params { entries }
    }

    /// The last value given for exactly this path.
    pub fn str(&self, path: &[&str]) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(p, _)| p.iter().map(String::as_str).eq(path.iter().copied()))
            .map(|(_, v)| v.as_str())
    }

    pub fn required(&self, path: &[&str]) -> Result<&str, ApiError> {
        match self.str(path) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ApiError::missing_param(&name(path))),
        }
    }

    pub fn int(&self, path: &[&str]) -> Result<Option<i64>, ApiError> {
        self.str(path)
            .map(|v| {
                v.parse().map_err(|_| {
                    ApiError::invalid_param(&name(path), format!("Invalid integer: {v}"))
                })
            })
            .transpose()
    }

    pub fn bool(&self, path: &[&str]) -> Result<Option<bool>, ApiError> {
        self.str(path)
            .map(|v| match v {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(ApiError::invalid_param(
                    &name(path),
                    format!("Invalid boolean: {v}"),
                )),
            })
            .transpose()
    }

    /// An enum-valued parameter; anything outside `allowed` is rejected as Stripe does.
    pub fn one_of(&self, path: &[&str], allowed: &[&str]) -> Result<Option<&str>, ApiError> {
        match self.str(path) {
            None => Ok(None),
            Some(v) if allowed.contains(&v) => Ok(Some(v)),
            Some(v) => Err(ApiError::invalid_param(
                &name(path),
                format!(
                    "Invalid {}: must be one of {} (got '{v}')",
                    name(path),
                    allowed.join(", ")
                ),
            )),
        }
    }

    /// A timestamp that may also be the word `now`.
    pub fn time(&self, path: &[&str], now: i64) -> Result<Option<i64>, ApiError> {
        match self.str(path) {
            Some("now") => Ok(Some(now)),
            _ => self.int(path),
        }
    }

    pub fn has(&self, path: &[&str]) -> bool {
        self.entries.iter().any(|(p, _)| starts_with(p, path))
    }

    /// The parameters under `path`, with that prefix removed.
    pub fn sub(&self, path: &[&str]) -> Params {
        let entries = self
            .entries
            .iter()
            .filter(|(p, _)| p.len() > path.len() && starts_with(p, path))
            .map(|(p, v)| (p[path.len()..].to_vec(), v.clone()))
            .collect();
        Params { entries }
    }

    /// The indices of the array at `path`, ascending, as path segments.
    pub fn indices(&self, path: &[&str]) -> Result<Vec<String>, ApiError> {
        let mut indices: Vec<usize> = Vec::new();
        for (p, _) in self.sub(path).entries {
            let i = p[0].parse().map_err(|_| {
                ApiError::invalid_param(
                    &name(path),
                    format!("Invalid array: {} must be an array", name(path)),
                )
            })?;
            if !indices.contains(&i) {
                indices.push(i);
            }
        }
        indices.sort_unstable();
        Ok(indices.into_iter().map(|i| i.to_string()).collect())
    }

    /// `metadata[k]=v` pairs. An empty value means "delete this key" on updates.
    pub fn map(&self, path: &[&str]) -> Vec<(String, String)> {
        self.sub(path)
            .entries
            .into_iter()
            .filter(|(p, _)| p.len() == 1)
            .map(|(mut p, v)| (p.remove(0), v))
            .collect()
    }

    /// Stripe refuses parameters it does not know, which catches typos in callers.
    pub fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        self.only_at(&[], known)
    }

    /// Like `only`, for the keys directly under `path` (`phases[0][...]`).
    pub fn only_at(&self, path: &[&str], known: &[&str]) -> Result<(), ApiError> {
        let unknown = self.entries.iter().find(|(p, _)| {
            p.len() > path.len() && starts_with(p, path) && !known.contains(&p[path.len()].as_str())
        });
        match unknown {
            Some((p, _)) => {
                let full: Vec<&str> = p[..=path.len()].iter().map(String::as_str).collect();
                Err(ApiError::unknown_param(&name(&full)))
            }
            None => Ok(()),
        }
    }
}

/// `items[0][price]` → `["items", "0", "price"]`; a stray bracket stays in the segment.
fn split_key(key: &str) -> Vec<String> {
    let Some(open) = key.find('[') else {
        return vec![key.to_string()];
    };
    let mut segs = vec![key[..open].to_string()];
    let mut rest = &key[open..];
    while let Some(inner) = rest.strip_prefix('[') {
        match inner.find(']') {
            Some(close) => {
                segs.push(inner[..close].to_string());
                rest = &inner[close + 1..];
            }
            None => break,
        }
    }
    if !rest.is_empty() {
        segs.push(rest.to_string());
    }
    segs
}

fn starts_with(p: &[String], prefix: &[&str]) -> bool {
    p.len() >= prefix.len() && p.iter().zip(prefix).all(|(a, b)| a == b)
}

/// The wire name of a path, for error messages: `items[0][price]`.
pub fn name(path: &[&str]) -> String {
    let mut s = path.first().copied().unwrap_or_default().to_string();
    for seg in &path[1.min(path.len())..] {
        s.push('[');
        s.push_str(seg);
        s.push(']');
    }
    s
}
