//! The layering rule of `src/lib.rs`, checked from the sources: **a file uses
//! only layers below its own** (code paths `crate::x` and `super::x`; doc
//! links are not dependencies), and the two top layers do not use each other.
//!
//! * The layers come from the `| layer | file | owns |` table in the module
//!   docs of `src/lib.rs`, so the docs and this test cannot disagree; every
//!   module under `src/` must be in the table and every module in the table
//!   must exist.
//! * Every `.rs` file under `src/` except `lib.rs` belongs to its top-level
//!   module (`src/x.rs` and `src/x/**` to `x`).
//! * The sources are tokenised with comments (doc comments included), string
//!   and character literals dropped; every path starting with `crate::`,
//!   `super::` or `self::super::` is resolved, grouped `use` trees
//!   (`crate::{a, b::{c, d}}`, over any number of lines) item by item, and
//!   `super` relative to the module the token sits in (the file's module path
//!   plus any inline `mod name { .. }` around it, e.g. `mod tests`).
//! * The first segment below the crate root names the module used: a module
//!   of its own name, or for a name re-exported at the root (`crate::Flist`,
//!   `crate::MAX_ARENA_SIZE`) the module the `pub use x::..` lines of
//!   `src/lib.rs` take it from. A call `crate::name(..)` of a re-exported
//!   function takes the function even if a module has the same name
//!   (`crate::stats()` is `global::stats`, not the `stats` module).
//! * The target's layer must be strictly below the file's, or the target the
//!   file's own module; a name that resolves to nothing is reported too.
//!
//! `checker_reports_crossings` shows on in-memory sources (and on the real
//! tree with a crossing path added) that a crossing is found, and that
//! comments, doc links and strings are not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Crossings of the rule in the real tree that are accepted for now, as
/// `"src/file.rs:line: path"`. Empty: the tree keeps the rule.
const KNOWN_EXCEPTIONS: &[&str] = &[];

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    Colons,
    Open,
    Close,
    Comma,
    Star,
    Punct(char),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_continue(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Skips a string body from `i` (just past the opening quote); returns the
/// index past the closing quote.
fn skip_string(c: &[char], mut i: usize, line: &mut usize) -> usize {
    while i < c.len() {
        match c[i] {
            '\\' => {
                if c.get(i + 1) == Some(&'\n') {
                    *line += 1;
                }
                i += 2;
            }
            '"' => return i + 1,
            '\n' => {
                *line += 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    i
}

/// Skips a raw string body from `i` (just past the opening quote) closed by
/// `"` and `hashes` `#`s; returns the index past the closing delimiter.
fn skip_raw_string(c: &[char], mut i: usize, hashes: usize, line: &mut usize) -> usize {
    while i < c.len() {
        if c[i] == '"' && (1..=hashes).all(|h| c.get(i + h) == Some(&'#')) {
            return i + 1 + hashes;
        }
        if c[i] == '\n' {
            *line += 1;
        }
        i += 1;
    }
    i
}

/// Skips a character literal starting at `i` (the opening quote) if there is
/// one; a lifetime or label is not one. Returns the index past it.
fn skip_char_literal(c: &[char], i: usize) -> Option<usize> {
    let at = |k: usize| c.get(k).copied().unwrap_or('\0');
    if at(i + 1) == '\\' {
        // '\n', '\'', '\\', '\u{..}': past the escaped character, then to the
        // closing quote.
        let mut j = i + 3;
        while j < c.len() && c[j] != '\'' {
            j += 1;
        }
        Some(j + 1)
    } else if at(i + 2) == '\'' {
        Some(i + 3)
    } else {
        None
    }
}

/// The tokens of `src` that paths are made of, with their lines; comments
/// (doc comments included), strings, character literals and numbers are
/// dropped.
fn tokens(src: &str) -> Vec<Token> {
    let c: Vec<char> = src.chars().collect();
    let at = |k: usize| c.get(k).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 1;
            i += 2;
            while i < c.len() && depth > 0 {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                } else {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = skip_string(&c, i + 1, &mut line);
        } else if ch == '\'' {
            match skip_char_literal(&c, i) {
                Some(end) => i = end,
                None => {
                    out.push(Token {
                        tok: Tok::Punct('\''),
                        line,
                    });
                    i += 1;
                }
            }
        } else if is_ident_start(ch) {
            let start = i;
            while i < c.len() && is_ident_continue(c[i]) {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let next = at(i);
            if matches!(word.as_str(), "b" | "c") && next == '"' {
                i = skip_string(&c, i + 1, &mut line);
                continue;
            }
            if word == "b" && next == '\'' {
                if let Some(end) = skip_char_literal(&c, i) {
                    i = end;
                    continue;
                }
            }
            if matches!(word.as_str(), "r" | "br" | "cr") && (next == '"' || next == '#') {
                let mut j = i;
                while at(j) == '#' {
                    j += 1;
                }
                if at(j) == '"' {
                    i = skip_raw_string(&c, j + 1, j - i, &mut line);
                    continue;
                }
                if word == "r" && next == '#' && is_ident_start(at(i + 1)) {
                    // A raw identifier, `r#name`.
                    let start = i + 1;
                    i = start;
                    while i < c.len() && is_ident_continue(c[i]) {
                        i += 1;
                    }
                    out.push(Token {
                        tok: Tok::Ident(c[start..i].iter().collect()),
                        line,
                    });
                    continue;
                }
            }
            out.push(Token {
                tok: Tok::Ident(word),
                line,
            });
        } else if ch.is_ascii_digit() {
            while i < c.len() && is_ident_continue(c[i]) {
                i += 1;
            }
        } else if ch == ':' && at(i + 1) == ':' {
            out.push(Token {
                tok: Tok::Colons,
                line,
            });
            i += 2;
        } else {
            let tok = match ch {
                '{' => Tok::Open,
                '}' => Tok::Close,
                ',' => Tok::Comma,
                '*' => Tok::Star,
                _ => Tok::Punct(ch),
            };
            out.push(Token { tok, line });
            i += 1;
        }
    }
    out
}

fn ident(toks: &[Token], k: usize) -> Option<&str> {
    match toks.get(k).map(|t| &t.tok) {
        Some(Tok::Ident(s)) => Some(s),
        _ => None,
    }
}

fn is(toks: &[Token], k: usize, tok: &Tok) -> bool {
    toks.get(k).map(|t| &t.tok) == Some(tok)
}

/// One leaf of a path: the absolute segments below the crate root it names
/// (`None`: it climbs above the root), as written, where.
#[derive(Debug, Clone)]
struct Leaf {
    segs: Option<Vec<String>>,
    text: String,
    line: usize,
    /// Followed by `(`: a call (so a function, not a module, of that name).
    call: bool,
    /// `as name`.
    alias: Option<String>,
}

/// Parses a use tree (or the rest of an expression path) at `k` below `base`
/// (written `text` so far); returns its leaves and the index past it.
fn tree(toks: &[Token], mut k: usize, base: Vec<String>, text: &str) -> (Vec<Leaf>, usize) {
    let line = toks.get(k).or(toks.last()).map_or(0, |t| t.line);
    match toks.get(k).map(|t| &t.tok) {
        Some(Tok::Open) => {
            k += 1;
            let mut leaves = Vec::new();
            while k < toks.len() {
                if is(toks, k, &Tok::Close) {
                    k += 1;
                    break;
                }
                let (more, next) = tree(toks, k, base.clone(), text);
                leaves.extend(more);
                // A token no tree starts with: step over it.
                k = next.max(k + 1);
                if is(toks, k, &Tok::Comma) {
                    k += 1;
                }
            }
            (leaves, k)
        }
        Some(Tok::Star) => (
            vec![Leaf {
                segs: Some(base),
                text: format!("{text}*"),
                line,
                call: false,
                alias: None,
            }],
            k + 1,
        ),
        Some(Tok::Ident(name)) => {
            let mut segs = base;
            if name != "self" {
                segs.push(name.clone());
            }
            let text = format!("{text}{name}");
            k += 1;
            let continues = is(toks, k, &Tok::Colons)
                && matches!(
                    toks.get(k + 1).map(|t| &t.tok),
                    Some(Tok::Ident(_) | Tok::Open | Tok::Star)
                );
            if continues {
                return tree(toks, k + 1, segs, &format!("{text}::"));
            }
            let call = is(toks, k, &Tok::Punct('('));
            let mut alias = None;
            if ident(toks, k) == Some("as") {
                if let Some(a) = ident(toks, k + 1) {
                    alias = Some(a.to_string());
                    k += 2;
                }
            }
            (
                vec![Leaf {
                    segs: Some(segs),
                    text,
                    line,
                    call,
                    alias,
                }],
                k,
            )
        }
        // `crate::<..>` or the like: the prefix itself.
        _ => (
            vec![Leaf {
                segs: Some(base),
                text: text.trim_end_matches("::").to_string(),
                line,
                call: false,
                alias: None,
            }],
            k,
        ),
    }
}

/// Parses the path starting at `k` (`crate`, `super` or `self`, followed by
/// `::`) in module `module`; returns its leaves and the index past it.
fn path(toks: &[Token], mut k: usize, module: &[String]) -> (Vec<Leaf>, usize) {
    let first = ident(toks, k).unwrap_or_default();
    let line = toks[k].line;
    let mut base: Option<Vec<String>> = Some(match first {
        "crate" => Vec::new(),
        _ => module.to_vec(),
    });
    let mut text = first.to_string();
    if first == "super" {
        base = base.and_then(|mut b| b.pop().map(|_| b));
    }
    k += 1;
    // Further `::super`s.
    while is(toks, k, &Tok::Colons) && ident(toks, k + 1) == Some("super") {
        base = base.and_then(|mut b| b.pop().map(|_| b));
        text.push_str("::super");
        k += 2;
    }
    let Some(base) = base else {
        let leaf = Leaf {
            segs: None,
            text,
            line,
            call: false,
            alias: None,
        };
        return (vec![leaf], k);
    };
    if is(toks, k, &Tok::Colons) {
        tree(toks, k + 1, base, &format!("{text}::"))
    } else {
        let leaf = Leaf {
            segs: Some(base),
            text,
            line,
            call: false,
            alias: None,
        };
        (vec![leaf], k)
    }
}

/// Every path leaf in `src`, a file of module `module` (its path below the
/// crate root).
fn leaves(src: &str, module: &[String]) -> Vec<Leaf> {
    let toks = tokens(src);
    let mut out = Vec::new();
    // Inline `mod name { .. }`s around the current token, with the brace
    // depth inside each.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut k = 0;
    while k < toks.len() {
        match &toks[k].tok {
            Tok::Open => {
                depth += 1;
                if k >= 2 && ident(&toks, k - 2) == Some("mod") {
                    if let Some(name) = ident(&toks, k - 1) {
                        inline.push((name.to_string(), depth));
                    }
                }
            }
            Tok::Close => {
                if inline.last().is_some_and(|&(_, d)| d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Tok::Ident(w)
                if matches!(w.as_str(), "crate" | "super" | "self")
                    && is(&toks, k + 1, &Tok::Colons)
                    && !(k > 0 && is(&toks, k - 1, &Tok::Colons))
                    && (w != "self" || ident(&toks, k + 2) == Some("super")) =>
            {
                let here: Vec<String> = module
                    .iter()
                    .cloned()
                    .chain(inline.iter().map(|(n, _)| n.clone()))
                    .collect();
                let (found, next) = path(&toks, k, &here);
                out.extend(found);
                k = next;
                continue;
            }
            _ => {}
        }
        k += 1;
    }
    out
}

/// The layer table of `lib.rs`'s docs: module name to layer.
fn layer_table(lib: &str) -> Result<BTreeMap<String, u32>, String> {
    let mut table = BTreeMap::new();
    let mut in_table = false;
    for line in lib.lines() {
        let Some(row) = line.trim_start().strip_prefix("//!") else {
            in_table = false;
            continue;
        };
        let row = row.trim();
        if !row.starts_with('|') {
            in_table = false;
            continue;
        }
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() >= 2 && cells[0] == "layer" && cells[1] == "file" {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        if cells[0].chars().all(|c| c == '-' || c == ':') {
            continue;
        }
        let layer: u32 = cells[0]
            .parse()
            .map_err(|_| format!("layer table row {row:?}: layer is not a number"))?;
        let names: Vec<&str> = cells
            .get(1)
            .unwrap_or(&"")
            .split('`')
            .skip(1)
            .step_by(2)
            .collect();
        if names.is_empty() {
            return Err(format!("layer table row {row:?}: no `file` named"));
        }
        for name in names {
            let module = name
                .strip_suffix(".rs")
                .or_else(|| name.strip_suffix('/'))
                .unwrap_or(name);
            if module.is_empty() || !module.chars().all(is_ident_continue) {
                return Err(format!("layer table row {row:?}: {name:?} is not a module"));
            }
            if let Some(old) = table.insert(module.to_string(), layer) {
                if old != layer {
                    return Err(format!("layer table: {module} in layers {old} and {layer}"));
                }
            }
        }
    }
    if table.is_empty() {
        return Err("no `| layer | file | owns |` table in lib.rs's `//!` docs".to_string());
    }
    Ok(table)
}

/// The names `lib.rs` re-exports at the crate root (`pub use x::{..}`), to
/// the module `x` they come from.
fn reexports(lib: &str, modules: &BTreeSet<String>) -> BTreeMap<String, String> {
    let toks = tokens(lib);
    let mut out = BTreeMap::new();
    for k in 0..toks.len() {
        if ident(&toks, k) != Some("pub") || ident(&toks, k + 1) != Some("use") {
            continue;
        }
        let found = match ident(&toks, k + 2) {
            Some("crate" | "self" | "super") => path(&toks, k + 2, &[]).0,
            _ => tree(&toks, k + 2, Vec::new(), "").0,
        };
        for leaf in found {
            let Some(segs) = leaf.segs else { continue };
            let (Some(first), Some(last)) = (segs.first(), segs.last()) else {
                continue;
            };
            if segs.len() >= 2 && modules.contains(first) {
                out.insert(leaf.alias.unwrap_or(last.clone()), first.clone());
            }
        }
    }
    out
}

/// A path across the rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Violation {
    /// `src/...`.
    file: String,
    line: usize,
    /// The path as written (a grouped `use` item with its prefix).
    path: String,
    why: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.path, self.why
        )
    }
}

/// The module path of a file below `src/` (`global/remote.rs` is
/// `global::remote`, `x/mod.rs` is `x`).
fn module_path(rel: &str) -> Vec<String> {
    let mut segs: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_string)
        .collect();
    if segs.len() > 1 && segs.last().map(String::as_str) == Some("mod") {
        segs.pop();
    }
    segs
}

/// Checks `files` (paths relative to `src/`, and sources) against the layer
/// table and re-exports of `lib` (the source of `lib.rs`).
fn check(lib: &str, files: &[(String, String)]) -> Result<Vec<Violation>, String> {
    let table = layer_table(lib)?;
    let mut modules: BTreeSet<String> = table.keys().cloned().collect();
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (rel, _) in files {
        if rel == "lib.rs" {
            continue;
        }
        let top = module_path(rel)[0].clone();
        if !table.contains_key(&top) {
            out.push(Violation {
                file: format!("src/{rel}"),
                line: 1,
                path: top.clone(),
                why: "module not in lib.rs's layer table".to_string(),
            });
        }
        seen.insert(top.clone());
        modules.insert(top);
    }
    for module in table.keys().filter(|m| !seen.contains(*m)) {
        out.push(Violation {
            file: "src/lib.rs".to_string(),
            line: 1,
            path: module.clone(),
            why: format!("the layer table lists {module}, which has no file under src/"),
        });
    }
    let roots = reexports(lib, &modules);
    for (rel, src) in files {
        if rel == "lib.rs" {
            continue;
        }
        let module = module_path(rel);
        let own = &module[0];
        let Some(&own_layer) = table.get(own) else {
            continue;
        };
        for leaf in leaves(src, &module) {
            let mut report = |why: String| {
                out.push(Violation {
                    file: format!("src/{rel}"),
                    line: leaf.line,
                    path: leaf.text.clone(),
                    why,
                })
            };
            let Some(segs) = &leaf.segs else {
                report("`super` above the crate root".to_string());
                continue;
            };
            let Some(first) = segs.first() else {
                report("the crate root itself (a glob of every module)".to_string());
                continue;
            };
            let target = if segs.len() == 1 && leaf.call && roots.contains_key(first) {
                &roots[first]
            } else if modules.contains(first) {
                first
            } else if let Some(m) = roots.get(first) {
                m
            } else {
                report(format!(
                    "`{first}` is neither a module nor a root re-export"
                ));
                continue;
            };
            if target == own {
                continue;
            }
            let layer = table.get(target).copied().unwrap_or(u32::MAX);
            if layer >= own_layer {
                report(format!(
                    "{own} (layer {own_layer}) uses {target} (layer {layer}); \
                     only layers below {own_layer} may be used"
                ));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Every `.rs` file under `dir`, as (path relative to `root`, source).
fn read_sources(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            read_sources(root, &p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p
                .strip_prefix(root)
                .expect("below src/")
                .to_string_lossy()
                .replace('\\', "/");
            let src =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            out.push((rel, src));
        }
    }
}

fn real_tree() -> (String, Vec<(String, String)>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    read_sources(&src, &src, &mut files);
    let lib = files
        .iter()
        .find(|(rel, _)| rel == "lib.rs")
        .expect("src/lib.rs")
        .1
        .clone();
    (lib, files)
}

#[test]
fn sources_keep_the_layering_rule() {
    let (lib, files) = real_tree();
    assert!(files.len() > 10, "read only {} files", files.len());
    let violations = check(&lib, &files).unwrap_or_else(|e| panic!("src/lib.rs: {e}"));
    let new: Vec<String> = violations
        .iter()
        .map(|v| v.to_string())
        .filter(|v| !KNOWN_EXCEPTIONS.iter().any(|k| v.starts_with(k)))
        .collect();
    assert!(
        new.is_empty(),
        "paths across the layering rule of src/lib.rs (a file uses only layers below \
         its own; the two top layers do not use each other):\n{}",
        new.join("\n")
    );
}

/// A small fake crate: its `lib.rs` (table and re-exports) and files.
const FAKE_LIB: &str = r#"//! Fake.
//!
//! | layer | file | owns |
//! |---|---|---|
//! | 0 | `sync.rs` | atomics |
//! | 0 | `stats.rs` | counters |
//! | 1 | `os.rs` | pages |
//! | 2 | `size_class.rs` | sizes |
//! | 9 | `arena.rs`, `arena/` | the arena |
//! | 9 | `global.rs`, `global/` | the global allocator |
//!
//! Not the table: | 5 | `nothing.rs` | - |
mod sync;
pub use arena::Arena;
pub use global::{stats, trim as release, Flist};
pub use size_class::{slabs, MAX_ARENA_SIZE};
pub use stats::Info;
pub use allocator_api2;
"#;

fn file(rel: &str, src: &str) -> (String, String) {
    (rel.to_string(), src.to_string())
}

fn reported(lib: &str, files: &[(String, String)]) -> Vec<(String, usize, String)> {
    check(lib, files)
        .expect("the fake table parses")
        .into_iter()
        .map(|v| (v.file, v.line, v.path))
        .collect()
}

fn expect(list: &[(&str, usize, &str)]) -> Vec<(String, usize, String)> {
    let mut v: Vec<_> = list
        .iter()
        .map(|&(f, l, p)| (f.to_string(), l, p.to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn checker_reports_crossings() {
    // The table and the re-exports.
    let table = layer_table(FAKE_LIB).expect("table");
    assert_eq!(table.len(), 6);
    assert_eq!((table["arena"], table["global"], table["os"]), (9, 9, 1));
    let modules = table.keys().cloned().collect();
    let roots = reexports(FAKE_LIB, &modules);
    assert_eq!(roots["Flist"], "global");
    assert_eq!(roots["release"], "global");
    assert_eq!(roots["MAX_ARENA_SIZE"], "size_class");
    assert_eq!(roots["Info"], "stats");
    assert!(!roots.contains_key("allocator_api2"));
    assert!(layer_table("//! no table\nmod x;\n").is_err());

    let os = r##"//! Pages. Doc links are not dependencies: [`crate::global::Flist`],
//! [`crate::arena`].
use crate::sync::Ordering;
use crate::global::x;
use crate::{stats::Info, arena::Arena};
use crate::{
    sync,
    size_class::{self, PAGE},
};
// A comment naming crate::global::Flist is not a dependency.
/// Neither is a doc link to [`crate::arena::Arena`] or [`super::global`].
/* Nor a block comment: crate::global::x */
fn f() -> usize {
    let _s = "crate::global::x in a string";
    let _r = r#"crate::arena"#;
    let _c = '{';
    let _ = crate::Flist::new();
    let _ = crate::stats::Info::default();
    let _ = crate::stats();
    let _ = crate::MAX_ARENA_SIZE;
    let _ = crate::nonesuch;
    super::global::thing()
}
mod tests {
    use super::*;
    use super::super::arena;
    use super::super::sync::Ordering;
}
"##;
    let remote = "use super::threads;\nuse super::super::arena::Arena;\n\
                  use self::super::thread_core;\nuse crate::global::x;\n";
    let mut files = vec![
        file("lib.rs", FAKE_LIB),
        file("sync.rs", "use crate::stats::Info;\n"),
        file("stats.rs", "use crate::sync::Ordering;\n"),
        file("os.rs", os),
        file("size_class.rs", "use crate::os;\nuse crate::sync;\n"),
        file(
            "arena.rs",
            "use crate::MAX_ARENA_SIZE;\nuse crate::global::stats;\n",
        ),
        file(
            "arena/allocator.rs",
            "use super::Arena;\nuse crate::arena::x;\n",
        ),
        file(
            "global.rs",
            "use crate::size_class;\nuse super::arena::Arena;\nmod inner { use super::x; }\n",
        ),
        file("global/remote.rs", remote),
        file("extra.rs", "use crate::sync;\n"),
    ];
    let want = expect(&[
        // Within layer 0.
        ("src/sync.rs", 1, "crate::stats::Info"),
        ("src/stats.rs", 1, "crate::sync::Ordering"),
        // Layer 1: a plain use, grouped uses (on one line and over several
        // lines), expression paths, root re-exports (`crate::stats()` is
        // `global::stats`, `crate::stats::Info` the `stats` module), a name
        // that resolves to nothing, `super` from a top-level file and
        // `super::super` out of an inline `mod tests`.
        ("src/os.rs", 4, "crate::global::x"),
        ("src/os.rs", 5, "crate::arena::Arena"),
        ("src/os.rs", 8, "crate::size_class::self"),
        ("src/os.rs", 8, "crate::size_class::PAGE"),
        ("src/os.rs", 17, "crate::Flist::new"),
        ("src/os.rs", 19, "crate::stats"),
        ("src/os.rs", 20, "crate::MAX_ARENA_SIZE"),
        ("src/os.rs", 21, "crate::nonesuch"),
        ("src/os.rs", 22, "super::global::thing"),
        ("src/os.rs", 26, "super::super::arena"),
        // The two top layers, either way.
        ("src/arena.rs", 2, "crate::global::stats"),
        ("src/global.rs", 2, "super::arena::Arena"),
        ("src/global/remote.rs", 2, "super::super::arena::Arena"),
        // A file outside the table.
        ("src/extra.rs", 1, "extra"),
    ]);
    let got = reported(FAKE_LIB, &files);
    assert_eq!(got, want, "\ngot:  {got:#?}\nwant: {want:#?}");

    // A module in the table without a file.
    files.retain(|(rel, _)| rel != "stats.rs");
    let got = reported(FAKE_LIB, &files);
    assert!(got.contains(&("src/lib.rs".to_string(), 1, "stats".to_string())));
    assert!(got.contains(&(
        "src/sync.rs".to_string(),
        1,
        "crate::stats::Info".to_string()
    )));

    // The same crossings added to the real tree are found, and nothing else.
    let (lib, mut files) = real_tree();
    let add = |files: &mut Vec<(String, String)>, rel: &str, extra: &str| -> usize {
        let f = files
            .iter_mut()
            .find(|(r, _)| r == rel)
            .unwrap_or_else(|| panic!("src/{rel}"));
        if !f.1.ends_with('\n') {
            f.1.push('\n');
        }
        f.1.push_str(extra);
        f.1.lines().count()
    };
    let os_line = add(&mut files, "os.rs", "use crate::global::Flist;\n");
    let arena_line = add(
        &mut files,
        "arena.rs",
        "use crate::{size_class,\n    global};\n",
    );
    let remote_line = add(
        &mut files,
        "global/remote.rs",
        "fn _f() { let _ = super::super::Arena::new(0); }\n",
    );
    let got: Vec<String> = check(&lib, &files)
        .expect("real table")
        .into_iter()
        .map(|v| v.to_string())
        .filter(|v| !KNOWN_EXCEPTIONS.iter().any(|k| v.starts_with(k)))
        .collect();
    let want = [
        format!("src/arena.rs:{arena_line}: crate::global: "),
        format!("src/global/remote.rs:{remote_line}: super::super::Arena::new: "),
        format!("src/os.rs:{os_line}: crate::global::Flist: "),
    ];
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (g, w) in got.iter().zip(&want) {
        assert!(g.starts_with(w.as_str()), "{g:?} is not {w:?}");
    }
}
