//! Names where a JSON text that serde cannot read goes wrong: maps a serde_json error's line and
//! column to a field path (`notification.title`, `tokens[3]`), since serde reports only a position.

/// An object or array that is open at the scanned position.
enum Frame {
    /// An object and the key whose value is being read (`None` between a `,` and the next key).
    Object(Option<String>),
    /// An array and the index of the entry being read.
    Array(usize),
}

/// The field path (`notification.title`, `tokens[3]`) at a 1-based line and column of a JSON
/// text, for naming where a text that serde cannot read goes wrong. `None` at the top level.
pub(super) fn json_path_at(text: &str, line: usize, column: usize) -> Option<String> {
    let end = byte_offset(text, line, column);
    let path = path_of(&open_frames(text.as_bytes(), end));
    (!path.is_empty()).then_some(path)
}

/// The byte offset of a 1-based line and column (serde counts the column in bytes), at most the
/// text's length.
fn byte_offset(text: &str, line: usize, column: usize) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    (line_start + column).min(text.len())
}

/// The objects and arrays still open at byte `end`, outermost first. serde read the text up to
/// `end` before it failed, so the scan can take that much for JSON.
fn open_frames(bytes: &[u8], end: usize) -> Vec<Frame> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut expecting_key = false;
    let mut i = 0;
    while i < end {
        match bytes[i] {
            b'{' => {
                stack.push(Frame::Object(None));
                expecting_key = true;
            }
            b'[' => stack.push(Frame::Array(0)),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Array(n)) => *n += 1,
                Some(Frame::Object(key)) => {
                    *key = None;
                    expecting_key = true;
                }
                None => {}
            },
            b':' => expecting_key = false,
            b'"' => {
                let start = i + 1;
                i = closing_quote(bytes, start);
                if expecting_key {
                    if let Some(Frame::Object(key)) = stack.last_mut() {
                        *key = Some(
                            String::from_utf8_lossy(&bytes[start..i.min(bytes.len())]).into_owned(),
                        );
                    }
                }
                if i >= end {
                    break; // the error is inside this string
                }
            }
            _ => {}
        }
        i += 1;
    }
    stack
}

/// The index of the `"` that closes the string whose text starts at `start`, or an index at or
/// past the end of `bytes` when the string is not closed.
fn closing_quote(bytes: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < bytes.len() && bytes[i] != b'"' {
        i += if bytes[i] == b'\\' { 2 } else { 1 };
    }
    i
}

/// The open frames as a path: keys joined by `.`, array indices as `[n]`. The push object
/// itself (the outermost frame) contributes only its current key.
fn path_of(stack: &[Frame]) -> String {
    let mut path = String::new();
    for frame in stack.iter().skip(1) {
        match frame {
            Frame::Object(Some(key)) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Object(None) => {}
            Frame::Array(n) => path.push_str(&format!("[{n}]")),
        }
    }
    if let Some(Frame::Object(Some(key))) = stack.first() {
        path = if path.is_empty() || path.starts_with('[') {
            format!("{key}{path}")
        } else {
            format!("{key}.{path}")
        };
    }
    path
}
