//! firebase-admin's `validator.isURL`, ported: which image and link URLs a push may carry.
//! WHATWG URL parsing (the `url` crate) stands in for Node's `new URL()`.

/// True when firebase-admin's `isURL` accepts `s`.
pub(super) fn is_url(s: &str) -> bool {
    const ALLOWED_PUNCTUATION: &str = ":/?#[]@!$&'()*+,;=.-_~%";
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ALLOWED_PUNCTUATION.contains(c))
    {
        return false;
    }
    let Ok(url) = url::Url::parse(s) else {
        return false;
    };
    if !matches!(url.scheme(), "http" | "https") {
        return false;
    }
    let host = url.host_str().unwrap_or("");
    if !(is_hostname(host) || is_bracketed_ipv6(host)) {
        return false;
    }
    let path = url.path();
    path.is_empty() || path == "/" || is_simple_path(path)
}

/// `^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*$`
fn is_hostname(host: &str) -> bool {
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

/// `^\[[a-fA-F0-9:.]+\]$`
fn is_bracketed_ipv6(host: &str) -> bool {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .is_some_and(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        })
}

/// `^(\/[\w\-.~!$'()*+,;=:@%]+)*\/?$`
fn is_simple_path(path: &str) -> bool {
    let path = path.strip_suffix('/').unwrap_or(path);
    let Some(rest) = path.strip_prefix('/') else {
        return path.is_empty();
    };
    rest.split('/').all(|segment| {
        !segment.is_empty()
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.~!$'()*+,;=:@%".contains(c))
    })
}

#[cfg(test)]
mod tests {
    use super::is_url;

    #[test]
    fn accepts_and_rejects_like_firebase_admin() {
        for ok in [
            "https://example.com/a.png",
            "http://cdn.example.com/x/y/",
            "https://[::1]/i.png",
            "https://a.b?x=1#f",
        ] {
            assert!(is_url(ok), "{ok}");
        }
        for bad in [
            "ftp://example.com/a",
            "not a url",
            "https://exa mple.com",
            "https://-bad.com/",
            "https://a.com//x",
            "example.com/a.png",
        ] {
            assert!(!is_url(bad), "{bad}");
        }
    }
}
