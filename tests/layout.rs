//! The crate's layout holds: no two top-level modules use each other, directly or round a
//! loop, and the leaf modules use nothing else in the crate. Read from the source text
//! (`crate::NAME` paths and `use crate::{...}` lists outside the test modules), so a change
//! that brings a cycle back fails here with the files that make it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules that must use nothing else in the crate, and what each may use all the same.
const LEAVES: &[(&str, &[&str])] = &[
    ("state", &[]),
    ("net", &[]),
    ("secret", &[]),
    ("sync", &[]),
    // The device thread's reopen schedule is the one `Backoff`.
    ("audio", &["net"]),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text of a file without its `#[cfg(test)] mod NAME { ... }` block at the end (tests
/// may use what they like).
fn code_of(text: &str) -> &str {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.starts_with("#[cfg(test)]") {
            let rest = &text[offset + line.len()..];
            if rest.starts_with("mod ") && rest.lines().next().is_some_and(|l| l.ends_with('{')) {
                return &text[..offset];
            }
        }
        offset += line.len();
    }
    text
}

/// The top-level module names `code` refers to with `crate::NAME` or in `use crate::{..}`.
fn referenced(code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(list) = rest.strip_prefix('{') {
            // `use crate::{a::X, b, c::{..}}`: the first name of each top-level item.
            let mut depth = 0usize;
            let mut item_start = true;
            for (i, c) in list.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if c.is_whitespace() => {}
                    _ if item_start => {
                        found.insert(ident(&list[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(ident(rest));
        }
    }
    found.retain(|m| modules.contains(m));
    found
}

/// Module -> the modules it uses -> the files that do.
fn graph() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules: BTreeSet<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_string()))
        .filter(|m| m != "main" && m != "lib")
        .collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap();
        let top = top.trim_end_matches(".rs").to_string();
        if !modules.contains(&top) || file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for used in referenced(code_of(&text), &modules) {
            if used != top {
                graph
                    .entry(top.clone())
                    .or_default()
                    .entry(used)
                    .or_default()
                    .insert(rel.display().to_string());
            }
        }
    }
    graph
}

#[test]
fn the_reference_reader_sees_each_form() {
    let modules: BTreeSet<String> = ["audio", "net", "radio", "zello"]
        .into_iter()
        .map(String::from)
        .collect();
    let code = "use crate::audio::X;\nuse crate::{net::{a, b}, radio,\n zello::Y};\nfn f() { crate::nothing::z(); }";
    let found = referenced(code, &modules);
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["audio", "net", "radio", "zello"]
    );
    let tested = "use crate::audio::X;\n#[cfg(test)]\nmod tests {\n    use crate::radio::Y;\n}\n";
    assert_eq!(
        referenced(code_of(tested), &modules)
            .into_iter()
            .collect::<Vec<_>>(),
        ["audio"]
    );
}

#[test]
fn no_module_uses_one_that_uses_it_back() {
    let graph = graph();
    // Depth-first search for a loop, reporting the first one with the files behind it.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut cycle = path[at..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in graph.get(m).into_iter().flat_map(|e| e.keys()) {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(cycle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            let why: Vec<String> = cycle
                .windows(2)
                .map(|w| format!("{} -> {} in {:?}", w[0], w[1], graph[&w[0]][&w[1]]))
                .collect();
            panic!("module cycle {}:\n{}", cycle.join(" -> "), why.join("\n"));
        }
    }
}

#[test]
fn leaf_modules_use_nothing_else_in_the_crate() {
    let graph = graph();
    for (leaf, allowed) in LEAVES {
        let uses: Vec<String> = graph
            .get(*leaf)
            .into_iter()
            .flat_map(|e| e.iter())
            .filter(|(m, _)| !allowed.contains(&m.as_str()))
            .map(|(m, files)| format!("{m} in {files:?}"))
            .collect();
        assert!(uses.is_empty(), "{leaf} uses {uses:?}");
    }
}
