//! Which pages may open a WebSocket here (`--origin`, `--sameorigin`): the defence against
//! cross-site WebSocket hijacking. websocketd's rules, with host names compared without
//! regard to case.

/// One `--origin` entry: `[scheme://]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Allowed {
    /// `None`: http and https alike.
    scheme: Option<String>,
    host: String,
    /// `None`: any port.
    port: Option<String>,
}

/// The origin policy.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    same_origin: bool,
    allowed: Option<Vec<Allowed>>,
}

impl Policy {
    /// From `--sameorigin` and `--origin` (a comma-separated list; empty: any origin).
    pub fn new(same_origin: bool, origins: Option<&str>) -> Policy {
        let allowed = origins.filter(|o| !o.trim().is_empty()).map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(|entry| {
                    let (scheme, rest) = match entry.split_once("://") {
                        Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
                        None => (None, entry),
                    };
                    let rest = rest.trim_end_matches('/');
                    let (host, port) = split_host_port(rest);
                    Allowed {
                        scheme,
                        host: host.to_ascii_lowercase(),
                        port,
                    }
                })
                .collect()
        });
        Policy {
            same_origin,
            allowed,
        }
    }

    /// Whether any check is on.
    pub fn is_open(&self) -> bool {
        !self.same_origin && self.allowed.is_none()
    }

    /// Whether a request with this `Origin` (absent: none), to this `Host`, over TLS or
    /// not, may open a WebSocket.
    pub fn allows(&self, origin: Option<&str>, host: &str, tls: bool) -> bool {
        if self.is_open() {
            return true;
        }
        // No Origin (not a browser), or "null" (a file, a sandbox): no site to match.
        let Some(origin) = origin.filter(|o| !o.is_empty() && *o != "null") else {
            return false;
        };
        let Some((scheme, rest)) = origin.split_once("://") else {
            return false;
        };
        let scheme = scheme.to_ascii_lowercase();
        let (o_host, o_port) = split_host_port(rest.trim_end_matches('/'));
        let o_host = o_host.to_ascii_lowercase();
        let o_port = o_port.unwrap_or_else(|| default_port(&scheme).to_owned());
        if self.same_origin {
            let (h, p) = split_host_port(host);
            let p = p.unwrap_or_else(|| (if tls { "443" } else { "80" }).to_owned());
            if h.to_ascii_lowercase() != o_host || p != o_port {
                return false;
            }
        }
        if let Some(list) = &self.allowed {
            return list.iter().any(|a| {
                a.scheme.as_ref().map_or(true, |s| *s == scheme)
                    && a.host == o_host
                    && a.port.as_ref().map_or(true, |p| *p == o_port)
            });
        }
        true
    }
}

fn default_port(scheme: &str) -> &'static str {
    match scheme {
        "https" | "wss" => "443",
        _ => "80",
    }
}

/// `host[:port]` or `[v6][:port]`.
fn split_host_port(s: &str) -> (String, Option<String>) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((h, after)) = rest.split_once(']') {
            return (h.to_owned(), after.strip_prefix(':').map(str::to_owned));
        }
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_owned(), Some(p.to_owned())),
        _ => (s.to_owned(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_policy_allows_all() {
        assert!(Policy::new(false, None).allows(None, "h", false));
        assert!(Policy::new(false, Some("")).allows(Some("http://evil"), "h", false));
    }

    #[test]
    fn same_origin() {
        let p = Policy::new(true, None);
        assert!(p.allows(Some("http://Site.example:8080"), "site.example:8080", false));
        assert!(p.allows(Some("https://site.example"), "site.example", true));
        assert!(!p.allows(Some("http://site.example"), "site.example:8080", false));
        assert!(!p.allows(Some("http://evil.example:8080"), "site.example:8080", false));
        assert!(!p.allows(None, "site.example", false));
        assert!(!p.allows(Some("null"), "site.example", false));
    }

    #[test]
    fn allow_list() {
        let p = Policy::new(false, Some("a.example, https://b.example, c.example:81"));
        assert!(p.allows(Some("http://a.example:9999"), "x", false));
        assert!(p.allows(Some("https://a.example"), "x", false));
        assert!(p.allows(Some("https://b.example"), "x", false));
        assert!(!p.allows(Some("http://b.example"), "x", false));
        assert!(p.allows(Some("http://c.example:81"), "x", false));
        assert!(!p.allows(Some("http://c.example"), "x", false));
        assert!(!p.allows(Some("http://d.example"), "x", false));
        assert!(!p.allows(None, "x", false));
    }
}
