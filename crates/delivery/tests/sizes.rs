//! The workspace's sources stay readable in pieces: no file in `crates/*/src` over 500 lines, no
//! function over 60 (counted from its `fn` line to its closing brace; unit tests, in `tests.rs`
//! files or after a file's `#[cfg(test)]`, are not counted).

use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 500;
const MAX_FUNCTION_LINES: usize = 60;

/// Every `.rs` file under `crates/*/src`.
fn sources() -> Vec<PathBuf> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut stack: Vec<PathBuf> = std::fs::read_dir(&crates)
        .unwrap()
        .map(|e| e.unwrap().path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
    let mut files = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The functions of `text` longer than the limit: (first line, name, lines). A function ends at
/// the first later line that closes a brace at the indentation its `fn` line has.
fn long_functions(text: &str) -> Vec<(usize, String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut long = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let trimmed = line.trim_start();
        let words: Vec<&str> = trimmed.split_whitespace().collect();
        let Some(at) = words.iter().position(|w| *w == "fn") else {
            continue;
        };
        let before_ok = words[..at]
            .iter()
            .all(|w| matches!(*w, "pub" | "async" | "const" | "unsafe") || w.starts_with("pub("));
        if !before_ok || trimmed.starts_with("//") {
            continue;
        }
        let indent = line.len() - trimmed.len();
        // A declaration without a body (a trait's) ends with `;` before any `{`.
        let Some(open) = (i..lines.len()).find(|&j| {
            let l = lines[j].trim_end();
            l.ends_with('{') || l.ends_with(';')
        }) else {
            continue;
        };
        if lines[open].trim_end().ends_with(';') {
            continue;
        }
        let close = (open + 1..lines.len()).find(|&j| {
            let l = lines[j];
            l.len() - l.trim_start().len() == indent && l.trim_start().starts_with('}')
        });
        let n = close.map_or(lines.len(), |c| c + 1) - i;
        if n > MAX_FUNCTION_LINES {
            let name = words.get(at + 1).unwrap_or(&"?");
            long.push((i + 1, name.split(['(', '<']).next().unwrap().to_owned(), n));
        }
    }
    long
}

#[test]
fn no_source_file_over_500_lines_and_no_function_over_60() {
    let mut problems = Vec::new();
    for path in sources() {
        let text = std::fs::read_to_string(&path).unwrap();
        let shown = path.display().to_string().replace("/../", "/");
        let lines = text.lines().count();
        if lines > MAX_FILE_LINES {
            problems.push(format!("{shown}: {lines} lines"));
        }
        if path.file_name().is_some_and(|f| f == "tests.rs") {
            continue;
        }
        for (line, name, n) in long_functions(&text) {
            problems.push(format!("{shown}:{line}: fn {name} is {n} lines"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_length_check_sees_a_long_function_and_skips_a_trait_declaration() {
    let body = "    x();\n".repeat(MAX_FUNCTION_LINES);
    let text = format!(
        "trait T {{\n    fn declared(&self);\n}}\n\npub(crate) async fn long() {{\n{body}}}\n\nfn short() {{\n}}\n"
    );
    let long = long_functions(&text);
    assert_eq!(long, [(5, "long".to_owned(), MAX_FUNCTION_LINES + 2)]);
}
