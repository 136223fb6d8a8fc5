//! Finding a secret in what a process printed without printing it: every 16-character piece of
//! each secret is looked for, and a finding names the secret and the piece's offset, never text.
//! Std only, so that the Lambda's tests can include this file without linking test support.

/// The length of the pieces looked for: long enough that no chance match is one (a secret
/// shorter than this is looked for whole).
pub const WINDOW: usize = 16;

/// Secrets to look for, each with a name that a finding may print.
#[derive(Clone, Default)]
pub struct Secrets {
    secrets: Vec<(String, Vec<char>)>,
}

impl Secrets {
    /// No secrets yet.
    pub fn new() -> Secrets {
        Secrets::default()
    }

    /// Adds `text` under `name`; a text shorter than [`WINDOW`] is looked for whole.
    pub fn add(mut self, name: &str, text: &str) -> Secrets {
        let chars: Vec<char> = text.chars().collect();
        assert!(!chars.is_empty(), "{name} is empty");
        self.secrets.push((name.to_owned(), chars));
        self
    }

    /// The parts of a service-account key: each line of the private key's body, the key id and
    /// the service account's email.
    pub fn service_account(self, private_key: &str, private_key_id: &str, email: &str) -> Secrets {
        let with_key = private_key
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("-----") && l.chars().count() >= WINDOW)
            .enumerate()
            .fold(self, |s, (n, line)| {
                s.add(&format!("private_key body line {}", n + 1), line)
            });
        with_key
            .add("private_key_id", private_key_id)
            .add("client_email", email)
    }

    /// Where a piece of a secret occurs in `output` (also once JSON or Rust string escapes are
    /// undone), as "<name>, characters a..b"; `None` if nowhere. Never the secret's text.
    pub fn find_in(&self, output: &str) -> Option<String> {
        let unescaped = unescape(output);
        for (name, chars) in &self.secrets {
            for (start, piece) in chars.windows(WINDOW.min(chars.len())).enumerate() {
                let piece: String = piece.iter().collect();
                if output.contains(&piece) || unescaped.contains(&piece) {
                    let end = start + piece.chars().count();
                    return Some(format!("{name}, characters {start}..{end}"));
                }
            }
        }
        None
    }

    /// `output` with every piece of every secret replaced by `*`, for a failure message.
    pub fn mask(&self, output: &str) -> String {
        let text: Vec<char> = unescape(output).chars().collect();
        let mut hidden = vec![false; text.len()];
        for (_, chars) in &self.secrets {
            let width = WINDOW.min(chars.len());
            for piece in chars.windows(width) {
                for at in 0..(text.len() + 1).saturating_sub(width) {
                    if &text[at..at + width] == piece {
                        hidden[at..at + width].iter_mut().for_each(|h| *h = true);
                    }
                }
            }
        }
        text.iter()
            .zip(hidden)
            .map(|(c, h)| if h { '*' } else { *c })
            .collect()
    }
}

/// A service-account value in one of the shapes operators end up with.
pub struct Shape {
    /// What it is, for messages.
    pub name: &'static str,
    /// The variable it is given in.
    pub variable: &'static str,
    /// The value.
    pub value: String,
    /// Whether pushq must accept it (else: refuse it, naming `variable`, never echoing `value`).
    pub works: bool,
}

impl Shape {
    /// What must never be printed for this shape: the key's parts (`key`) and, when the value
    /// is not JSON (base64, a path), the value itself, in which the key's parts do not show.
    pub fn secrets(&self, key: Secrets) -> Secrets {
        let json = self
            .value
            .trim_start_matches('\u{feff}')
            .starts_with(['{', '"', '\'']);
        if json {
            key
        } else {
            key.add(&format!("the value ({})", self.name), &self.value)
        }
    }
}

/// The shapes a service-account key `json` arrives in: with a UTF-8 BOM, in the quotes an env
/// file leaves (both work); base64-encoded, cut short, or a path to nothing (all refused).
pub fn service_account_shapes(json: &str, missing_path: &str) -> Vec<Shape> {
    let shape = |name, variable, value: String, works| Shape {
        name,
        variable,
        value,
        works,
    };
    let cut = json
        .char_indices()
        .nth(json.chars().count() * 3 / 4)
        .unwrap()
        .0;
    vec![
        shape(
            "BOM-prefixed JSON",
            "PUSHQ_FCM_CREDENTIALS",
            format!("\u{feff}{json}"),
            true,
        ),
        shape(
            "JSON in double quotes",
            "PUSHQ_FCM_CREDENTIALS",
            format!("\"{json}\""),
            true,
        ),
        shape(
            "JSON in single quotes",
            "GOOGLE_APPLICATION_CREDENTIALS",
            format!("'{json}'"),
            true,
        ),
        shape(
            "base64 of the JSON",
            "PUSHQ_FCM_CREDENTIALS",
            base64(json.as_bytes()),
            false,
        ),
        shape(
            "truncated JSON",
            "PUSHQ_FCM_CREDENTIALS",
            json[..cut].to_owned(),
            false,
        ),
        shape(
            "a missing path",
            "GOOGLE_APPLICATION_CREDENTIALS",
            missing_path.to_owned(),
            false,
        ),
    ]
}

/// A TCP server on this machine's non-loopback address that closes every connection it accepts:
/// a database host that is not loopback, which a client fails to talk to at once. Where the
/// machine has no route off itself, the host is 0.0.0.0 (not a loopback address; Linux connects
/// it to this machine). Stopped when dropped.
pub struct NonLoopbackServer {
    /// The address to name in a URL.
    pub host: String,
    /// The port.
    pub port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NonLoopbackServer {
    /// Binds a free port and serves on a thread of its own.
    pub fn start() -> NonLoopbackServer {
        use std::sync::atomic::{AtomicBool, Ordering};
        // Connecting a UDP socket sends nothing; it only picks the address a packet would leave
        // from (203.0.113.1 is a documentation address, never answered).
        let host = std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| s.connect("203.0.113.1:9").and_then(|()| s.local_addr()))
            .map(|a| a.ip())
            .ok()
            .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
            .map_or_else(|| "0.0.0.0".to_owned(), |ip| ip.to_string());
        let listener = std::net::TcpListener::bind((host.as_str(), 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                drop(conn);
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
            }
        });
        NonLoopbackServer {
            host,
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl NonLoopbackServer {
    /// A PostgreSQL URL to this server that asks for TLS without verifying the certificate,
    /// with a user and a password that must never be printed.
    pub fn unverified_database_url(&self) -> String {
        format!(
            "postgres://pushq_owner:s3cret-pw@{}:{}/pushq?sslmode=require",
            self.host, self.port
        )
    }

    /// Checks the output of `program` started with [`Self::unverified_database_url`]: exactly one
    /// warning that the certificate is not verified, naming this host, and neither the user nor
    /// the password anywhere.
    pub fn assert_warned_once(&self, output: &str, program: &str) {
        let secrets = Secrets::new()
            .add("the password", "s3cret-pw")
            .add("the user", "pushq_owner");
        let warnings: Vec<&str> = output
            .lines()
            .filter(|l| l.contains("does not verify the server's certificate"))
            .collect();
        assert_eq!(
            warnings.len(),
            1,
            "one warning about the unverified certificate:\n{}",
            secrets.mask(output)
        );
        assert!(warnings[0].contains(&self.host), "{}", warnings[0]);
        if let Some(found) = secrets.find_in(output) {
            panic!("{program} printed {found} of the DATABASE_URL");
        }
    }
}

impl Drop for NonLoopbackServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // One more connection wakes the accept loop, which then sees the flag.
        let _ = std::net::TcpStream::connect((self.host.as_str(), self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Undoes the escapes a JSON log line or a Rust `Debug` string puts into quoted text.
fn unescape(text: &str) -> String {
    text.replace("\\\\", "\u{0}")
        .replace("\\n", "\n")
        .replace("\\\"", "\"")
        .replace("\\'", "'")
        .replace('\u{0}', "\\")
}

/// Standard base64 with padding (the shape a key takes when someone encodes it for an env var).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn a_piece_is_found_escaped_or_not_and_masked() {
        let secrets = Secrets::new().add("pw", "0123456789abcdefXYZ");
        assert_eq!(secrets.find_in("nothing here"), None);
        assert_eq!(
            secrets.find_in("x 3456789abcdefXYZ y").as_deref(),
            Some("pw, characters 3..19")
        );
        let quoted = Secrets::new().add("json", "{\"a\":\"0123456789abcdef\"}");
        assert!(quoted
            .find_in(r#"Error: "{\"a\":\"0123456789abcdef"#)
            .is_some());
        assert_eq!(
            secrets.mask("a 0123456789abcdefXYZ b"),
            format!("a {} b", "*".repeat(19))
        );
    }
}
