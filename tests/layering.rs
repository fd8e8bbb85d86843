//! The layering of `src/` (lib.rs's module map): a module may use only modules on lower layers.
//! Reads every `crate::<module>` path outside comments and fails on an import across or up the
//! layers, so the path event → engine → rules → notify stays one-way.

mod common;

/// Layer of each top-level module, lowest first (the order lib.rs documents).
const LAYERS: &[(&str, u32)] = &[
    ("time", 0),
    ("diag", 0),
    ("event", 1),
    ("stats", 1),
    ("health", 1),
    ("rules", 2),
    ("config", 3),
    ("engine", 4),
    ("ingest", 5),
    ("audit", 6),
    ("notify", 7),
    ("report", 8),
    ("telemetry", 8),
    ("http", 9),
    ("service", 10),
    ("cli", 11),
];

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every (file, line, used module) of `crate::<module>` outside comments, including every path
/// of a `crate::{…}` list (nested, over several lines). (`super::` is not read: no top-level
/// module uses it to reach the crate root, and in nested modules it means the parent.)
fn uses(src: &std::path::Path) -> Vec<(String, String, usize, String)> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut out = Vec::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap().to_string_lossy().to_string();
        let module = rel.split('/').next().unwrap().trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        // Code without comments, and the line each byte came from.
        let (mut code, mut line_of) = (String::new(), Vec::new());
        for (i, line) in std::fs::read_to_string(&f).unwrap().lines().enumerate() {
            let c = line.split("//").next().unwrap();
            code.push_str(c);
            code.push('\n');
            line_of.extend(std::iter::repeat_n(i + 1, c.len() + 1));
        }
        let mut at = 0;
        while let Some(found) = code[at..].find("crate::") {
            let start = at + found + "crate::".len();
            at = start;
            let rest = &code[start..];
            if let Some(list) = rest.strip_prefix('{') {
                // The whole brace-balanced list; each top-level item's first segment is a module.
                let (mut depth, mut item, mut items) = (1, String::new(), Vec::new());
                for ch in list.chars() {
                    match ch {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    if depth == 0 {
                        break;
                    }
                    if ch == ',' && depth == 1 {
                        items.push(std::mem::take(&mut item));
                    } else {
                        item.push(ch);
                    }
                }
                items.push(item);
                for it in items {
                    let m = it.trim().split("::").next().unwrap().trim().to_string();
                    if !m.is_empty() {
                        out.push((module.clone(), rel.clone(), line_of[start], m));
                    }
                }
            } else {
                let used: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !used.is_empty() {
                    out.push((module.clone(), rel.clone(), line_of[start], used));
                }
            }
        }
    }
    out
}

#[test]
fn no_module_uses_one_on_its_own_or_a_higher_layer() {
    let src = common::repo().join("src");
    let mut problems = Vec::new();
    for (module, file, line, used) in uses(&src) {
        if used == module {
            continue;
        }
        let (Some(from), Some(to)) = (layer(&module), layer(&used)) else {
            problems.push(format!("{file}:{line}: module `{module}` or `{used}` has no layer in LAYERS"));
            continue;
        };
        if to >= from {
            problems.push(format!("{file}:{line}: `{module}` (layer {from}) uses `{used}` (layer {to})"));
        }
    }
    assert!(problems.is_empty(), "imports across or up the layers:\n{}", problems.join("\n"));
}

/// The check itself: an upward import in a sample is caught.
#[test]
fn the_check_catches_an_upward_import() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("rules/x.rs"),
        "use crate::engine::Deployment;\n// crate::notify in a comment\nuse crate::{time::Millis, http};\n",
    )
    .unwrap();
    let found: Vec<String> = uses(dir.path()).into_iter().map(|u| u.3).collect();
    assert_eq!(found, vec!["engine", "time", "http"]);
}

/// lib.rs's module map (the `//! N. [`module`] …` lines) states the same layers as [`LAYERS`], so
/// the map a newcomer reads first cannot drift from what this test enforces.
#[test]
fn the_module_map_in_lib_rs_matches_the_layers() {
    let lib = std::fs::read_to_string(common::repo().join("src/lib.rs")).unwrap();
    // The numbered items of the map, each with its continuation lines.
    let mut items: Vec<(u32, String)> = Vec::new();
    for line in lib.lines().filter_map(|l| l.strip_prefix("//!")).map(str::trim) {
        let numbered = line.split_once(". ").and_then(|(n, rest)| Some((n.parse::<u32>().ok()?, rest)));
        match (numbered, items.last_mut()) {
            (Some((n, rest)), _) => items.push((n, rest.to_string())),
            (None, Some(last)) if !line.is_empty() && !line.starts_with("#") => last.1 += &format!(" {line}"),
            _ => {}
        }
    }
    // Every [`module`] an item names (paths like [`ingest::kafka`] are within a module).
    let mut stated: Vec<(String, u32)> = items
        .iter()
        .flat_map(|(n, text)| {
            text.split("[`")
                .skip(1)
                .map(|p| p.split('`').next().unwrap())
                .filter(|m| !m.contains("::"))
                .map(|m| (m.to_string(), *n))
        })
        .collect();
    stated.sort();
    stated.dedup();
    let mut want: Vec<(String, u32)> = LAYERS.iter().map(|(m, l)| (m.to_string(), *l)).collect();
    want.sort();
    assert_eq!(stated, want, "src/lib.rs's module map and tests/layering.rs's LAYERS disagree");
}
