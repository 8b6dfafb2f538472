//! The layers of `src/` (docs/architecture.md), checked from the source:
//! every path a file names (`use crate::..`, `super::..`, `crate::x::y` in
//! code) and every `mod` it declares must lead to its own layer or one
//! below, and nothing inside the crate may import what `lib.rs` only
//! re-exports (`crate::CacheError`: write `crate::errors::CacheError`).
//!
//! Bottom to top: core, memory engine, memory store, the stores above it
//! (Redis, near cache, dyn), wasm bindings; `lib.rs` is the facade over all.
//!
//! Test code (a module declared under `#[cfg(test)]` or `#[cfg(all(test,
//! ..))]`, and what it declares) may reach up, as a differential test of the
//! slot engine against the memory engine's model does; the facade rule
//! holds for it too.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    Core,
    Engine,
    MemoryStore,
    Stores,
    Wasm,
    Facade,
}

/// The parts of the memory engine that sit beside `engine/` in
/// `src/stores/memory/` (S3-FIFO's ghosts, the adaptive policy's sketch and
/// shadows, the hasher, the wasm slot engine); every other file there is the
/// memory store's.
const ENGINE_PARTS: [&str; 7] = ["engine", "fifo_ghost", "ghost", "shadow", "sketch", "hasher", "slots"];

/// The layer of a file, by its path under `src/`.
fn layer(file: &str) -> Layer {
    let top = |prefix: &str| file == format!("{prefix}.rs") || file.starts_with(&format!("{prefix}/"));
    if file == "lib.rs" {
        Layer::Facade
    } else if top("wasm") || top("wasm_redis") {
        Layer::Wasm
    } else if top("stores/redis") || top("stores/near") || top("stores/dyn_store") || file == "stores/mod.rs" {
        Layer::Stores
    } else if let Some(rest) = file.strip_prefix("stores/memory/") {
        let part = rest.split('/').next().unwrap().trim_end_matches(".rs");
        if ENGINE_PARTS.contains(&part) { Layer::Engine } else { Layer::MemoryStore }
    } else if !file.contains('/') || top("remote") {
        // `remote/`: the Redis store's format, keyspace and scripts, no I/O.
        Layer::Core
    } else {
        panic!("src/{file} is in no layer: place it in tests/layers.rs (and docs/architecture.md)")
    }
}

/// One source file: its path under `src/`, its module path, its text with
/// comments and literals blanked out.
struct Source {
    file: String,
    module: Vec<String>,
    code: String,
}

struct Violation {
    file: String,
    line: usize,
    what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "src/{}:{}: {}", self.file, self.line, self.what)
    }
}

/// The module path of a file under `src/`: `stores/memory/mod.rs` is
/// `stores::memory`, `lib.rs` the crate root.
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file.trim_end_matches(".rs").split('/').map(str::to_string).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// `text` with comments, string, byte-string and char literals replaced by
/// spaces (newlines kept, so lines still count), so that only code is read.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if let Some(end) = raw_string_end(&chars, i) {
            for &c in &chars[i..end] {
                blank(&mut out, c);
            }
            out.push_str("\"\"");
            i = end;
        } else if c == '"' || (c == 'b' && next == Some('"') && !ident_char(chars.get(i.wrapping_sub(1)))) {
            i += if c == 'b' { 2 } else { 1 };
            out.push('"');
            while i < chars.len() && chars[i] != '"' {
                let len = if chars[i] == '\\' { 2 } else { 1 };
                for &c in chars.iter().skip(i).take(len) {
                    if c == '\n' {
                        out.push('\n');
                    }
                }
                i += len;
            }
            out.push('"');
            i += 1;
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A char literal ('x', '\n', '\u{..}'); a lifetime has no closing quote.
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            out.push_str("' '");
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_char(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || *c == '_')
}

/// Where the raw string (`r"..."`, `r#"..."#`, `br#"..."#`) starting at `i` ends.
fn raw_string_end(chars: &[char], i: usize) -> Option<usize> {
    if ident_char(chars.get(i.wrapping_sub(1))) {
        return None;
    }
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = chars[j..].iter().take_while(|&&c| c == '#').count();
    j += hashes;
    if chars.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    while j < chars.len() {
        if chars[j] == '"' && chars[j + 1..].iter().take(hashes).filter(|&&c| c == '#').count() == hashes {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(chars.len())
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Ident(String),
    Punct(char),
    PathSep,
}

/// The tokens of `code` (from [`code_only`]) with their line numbers.
fn tokens(code: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = code.chars().collect();
    let (mut out, mut line, mut i) = (Vec::new(), 1, 0);
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while ident_char(chars.get(i)) {
                i += 1;
            }
            out.push((Token::Ident(chars[start..i].iter().collect()), line));
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push((Token::PathSep, line));
            i += 2;
        } else {
            out.push((Token::Punct(c), line));
            i += 1;
        }
    }
    out
}

/// A path a file names, as written (`crate::store::Metadata`, `super::x`,
/// `engine::Engine`), and the inline module it is written in.
struct Named {
    path: Vec<String>,
    line: usize,
    /// Inline modules (`mod tests { .. }`) around it, outermost first.
    inside: Vec<String>,
    in_use: bool,
    /// Inside an inline module declared for tests only.
    in_test: bool,
}

/// Every `use` leaf, every `crate::`/`super::`/`self::` path in code, and
/// every `mod name;` of one file.
/// `mod name;` declarations: the name, the line, the inline modules around
/// it, and whether it is for tests only.
type Mods = Vec<(String, usize, Vec<String>, bool)>;

fn read_paths(tokens: &[(Token, usize)]) -> (Vec<Named>, Mods, Vec<usize>) {
    let (mut named, mut mods, mut path_attrs) = (Vec::new(), Vec::new(), Vec::new());
    // Inline modules open around the current token: name, depth, test-only.
    let mut inline: Vec<(String, usize, bool)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    let ident = |i: usize| match tokens.get(i) {
        Some((Token::Ident(s), _)) => Some(s.as_str()),
        _ => None,
    };
    while i < tokens.len() {
        let (token, line) = &tokens[i];
        let inside: Vec<String> = inline.iter().map(|(m, ..)| m.clone()).collect();
        let in_test = inline.iter().any(|&(_, _, test)| test);
        match token {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                depth = depth.checked_sub(1).expect("unbalanced braces: the lexer misread a literal");
                if inline.last().is_some_and(|&(_, d, _)| d == depth) {
                    inline.pop();
                }
            }
            // `#[path = ".."]` puts a module's file where its path does not say its layer.
            Token::Punct('#')
                if tokens.get(i + 1).is_some_and(|(t, _)| *t == Token::Punct('['))
                    && ident(i + 2) == Some("path")
                    && tokens.get(i + 3).is_some_and(|(t, _)| *t == Token::Punct('=')) =>
            {
                path_attrs.push(*line);
            }
            Token::Ident(word) if word == "mod" => {
                if let (Some(name), Some((next, _))) = (ident(i + 1), tokens.get(i + 2)) {
                    let test = in_test || for_tests(&tokens[..i]);
                    match next {
                        Token::Punct(';') => mods.push((name.to_string(), *line, inside, test)),
                        Token::Punct('{') => inline.push((name.to_string(), depth, test)),
                        _ => {}
                    }
                }
            }
            Token::Ident(word) if word == "use" => {
                let end = (i..tokens.len()).find(|&j| tokens[j].0 == Token::Punct(';')).unwrap_or(tokens.len());
                let mut leaves = Vec::new();
                use_tree(&tokens[i + 1..end], &mut Vec::new(), &mut leaves);
                for path in leaves {
                    named.push(Named { path, line: *line, inside: inside.clone(), in_use: true, in_test });
                }
                i = end;
                continue;
            }
            Token::Ident(word)
                if matches!(word.as_str(), "crate" | "super" | "self")
                    && tokens.get(i + 1).is_some_and(|(t, _)| *t == Token::PathSep)
                    && !tokens.get(i.wrapping_sub(1)).is_some_and(|(t, _)| *t == Token::PathSep) =>
            {
                let mut path = vec![word.clone()];
                let mut j = i + 1;
                while tokens.get(j).is_some_and(|(t, _)| *t == Token::PathSep) {
                    match ident(j + 1) {
                        Some(seg) => path.push(seg.to_string()),
                        None => break,
                    }
                    j += 2;
                }
                named.push(Named { path, line: *line, inside, in_use: false, in_test });
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    (named, mods, path_attrs)
}

/// Whether the item ending `before` (a `mod` about to be declared) carries
/// `#[cfg(test)]` or `#[cfg(all(test, ..))]` among its attributes.
fn for_tests(before: &[(Token, usize)]) -> bool {
    let mut end = before.len();
    // Skip the visibility: `pub`, `pub(crate)`, `pub(super)`.
    if end > 0 && before[end - 1].0 == Token::Punct(')') {
        end = before[..end].iter().rposition(|(t, _)| *t == Token::Punct('(')).unwrap_or(0);
    }
    if end > 0 && before[end - 1].0 == Token::Ident("pub".into()) {
        end -= 1;
    }
    // Each attribute `#[...]` before it, last first.
    while end > 0 && before[end - 1].0 == Token::Punct(']') {
        let Some(open) = before[..end].iter().rposition(|(t, _)| *t == Token::Punct('#')) else { return false };
        let attr: Vec<&Token> = before[open..end].iter().map(|(t, _)| t).collect();
        let word = |i: usize, w: &str| attr.get(i).is_some_and(|t| **t == Token::Ident(w.into()));
        let punct = |i: usize, c: char| attr.get(i).is_some_and(|t| **t == Token::Punct(c));
        // `# [ cfg ( test )` or `# [ cfg ( all ( test`
        if word(2, "cfg")
            && punct(3, '(')
            && (word(4, "test") && punct(5, ')') || word(4, "all") && punct(5, '(') && word(6, "test"))
        {
            return true;
        }
        end = open;
    }
    false
}

/// The leaves of a use tree (`a::{b, c::{d, e}}`), each as a whole path.
fn use_tree(tokens: &[(Token, usize)], prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut i = 0;
    let start = prefix.len();
    while i < tokens.len() {
        match &tokens[i].0 {
            Token::Ident(seg) if seg == "as" => i += 2,
            Token::Ident(seg) if prefix.is_empty() && seg == "pub" => i += 1,
            Token::Ident(seg) => {
                prefix.push(seg.clone());
                i += 1;
            }
            Token::PathSep => i += 1,
            Token::Punct('(') => {
                // `pub(crate)`, `pub(super)`: a visibility, not a path.
                i += tokens[i..].iter().position(|(t, _)| *t == Token::Punct(')')).unwrap_or(0) + 1;
            }
            Token::Punct('{') => {
                let (mut depth, mut j, mut item) = (0, i + 1, i + 1);
                while j < tokens.len() {
                    match tokens[j].0 {
                        Token::Punct('{') => depth += 1,
                        Token::Punct('}') if depth == 0 => break,
                        Token::Punct('}') => depth -= 1,
                        Token::Punct(',') if depth == 0 => {
                            use_tree(&tokens[item..j], prefix, out);
                            item = j + 1;
                        }
                        _ => {}
                    }
                    j += 1;
                }
                use_tree(&tokens[item..j.min(tokens.len())], prefix, out);
                prefix.truncate(start);
                return;
            }
            Token::Punct(',') | Token::Punct('*') | Token::Punct(_) => i += 1,
        }
    }
    if prefix.len() > start {
        out.push(prefix.clone());
    }
    prefix.truncate(start);
}

fn read_sources(src: &Path) -> Vec<Source> {
    let mut files = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path: PathBuf = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let file = path.strip_prefix(src).unwrap().to_string_lossy().replace('\\', "/");
            let code = code_only(&std::fs::read_to_string(&path).unwrap());
            Source { module: module_of(&file), file, code }
        })
        .collect()
}

/// Every path and `mod` of every file that breaks the layer order, or
/// imports through the facade.
fn violations(sources: &[Source]) -> Vec<Violation> {
    let modules: BTreeMap<Vec<String>, &str> = sources.iter().map(|s| (s.module.clone(), s.file.as_str())).collect();
    // Where a module path leads: the file of its longest known prefix.
    let target = |path: &[String]| (0..=path.len()).rev().find_map(|n| modules.get(&path[..n]).copied());
    // Files of test-only modules, and the files they declare in turn.
    let mut edges = Vec::new();
    for source in sources {
        for (name, _, inside, test) in read_paths(&tokens(&source.code)).1 {
            if let Some(&child) = modules.get(&[source.module.clone(), inside, vec![name]].concat()) {
                edges.push((source.file.as_str(), child, test));
            }
        }
    }
    let mut tests: BTreeMap<&str, bool> = BTreeMap::new();
    while let Some(&(_, child, _)) = edges.iter().find(|&&(parent, child, test)| {
        (test || tests.get(parent).copied().unwrap_or(false)) && !tests.get(child).copied().unwrap_or(false)
    }) {
        tests.insert(child, true);
    }
    let mut found = Vec::new();
    for source in sources {
        let here = layer(&source.file);
        if here == Layer::Facade {
            continue;
        }
        let test_file = tests.get(source.file.as_str()).copied().unwrap_or(false);
        let (named, mods, path_attrs) = read_paths(&tokens(&source.code));
        for line in path_attrs {
            found.push(Violation {
                file: source.file.clone(),
                line,
                what: "`#[path]` hides the layer of a module's file: keep each file where its module path says".into(),
            });
        }
        for name in named {
            let mut module = source.module.clone();
            module.extend(name.inside.iter().cloned());
            let mut segments = name.path.iter().peekable();
            let absolute: Vec<String> = match segments.peek().map(|s| s.as_str()) {
                Some("crate") => segments.skip(1).cloned().collect(),
                Some("super" | "self") => {
                    while let Some(seg) = segments.next_if(|s| *s == "super" || *s == "self") {
                        if seg == "super" {
                            module.pop();
                        }
                    }
                    module.extend(segments.cloned());
                    module
                }
                // `use engine::X` names a child module (or an extern crate, not ours).
                Some(first)
                    if name.in_use && modules.contains_key(&[module.clone(), vec![first.to_string()]].concat()) =>
                {
                    module.extend(segments.cloned());
                    module
                }
                _ => continue,
            };
            let written = name.path.join("::");
            match target(&absolute) {
                Some(file) if file == "lib.rs" && !absolute.is_empty() => found.push(Violation {
                    file: source.file.clone(),
                    line: name.line,
                    what: format!(
                        "`{written}` imports what lib.rs re-exports: name its module (lib.rs is a facade \
                         nobody inside the crate imports)"
                    ),
                }),
                Some(file) if layer(file) > here && !(test_file || name.in_test) => found.push(Violation {
                    file: source.file.clone(),
                    line: name.line,
                    what: format!("`{written}` runs up from {here:?} to {:?} (src/{file})", layer(file)),
                }),
                _ => {}
            }
        }
        for (name, line, inside, _) in mods {
            let mut module = source.module.clone();
            module.extend(inside);
            module.push(name.clone());
            if let Some(file) = modules.get(&module)
                && layer(file) > here
            {
                found.push(Violation {
                    file: source.file.clone(),
                    line,
                    what: format!("`mod {name}` declares src/{file} of {:?}, above {here:?}", layer(file)),
                });
            }
        }
    }
    found
}

#[test]
fn no_path_runs_up_a_layer_or_through_the_facade() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let sources = read_sources(&src);
    assert!(sources.len() > 20, "read src/");
    let list: Vec<String> = violations(&sources).iter().map(ToString::to_string).collect();
    assert!(list.is_empty(), "{} imports break the layers:\n{}", list.len(), list.join("\n"));
}

/// The checker on small made-up trees: it must catch what it is for.
fn check(files: &[(&str, &str)]) -> Vec<String> {
    let sources: Vec<Source> = files
        .iter()
        .map(|(file, text)| Source { file: file.to_string(), module: module_of(file), code: code_only(text) })
        .collect();
    violations(&sources).iter().map(ToString::to_string).collect()
}

const LIB: (&str, &str) = ("lib.rs", "mod store; mod stores; mod clock; pub use store::Metadata;");

#[test]
fn an_import_of_a_re_export_is_caught() {
    let found = check(&[LIB, ("store.rs", "pub struct Metadata;"), ("refresh.rs", "fn f(m: crate::Metadata) {}")]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("src/refresh.rs:1: `crate::Metadata` imports what lib.rs re-exports"), "{found:?}");
    let fine = check(&[LIB, ("store.rs", "pub struct Metadata;"), ("refresh.rs", "use crate::store::Metadata;")]);
    assert_eq!(fine, Vec::<String>::new());
    let grouped = check(&[LIB, ("store.rs", ""), ("clock.rs", "use crate::{store::X, Metadata as M};")]);
    assert_eq!(grouped.len(), 1, "{grouped:?}");
}

#[test]
fn an_import_up_the_layers_is_caught_in_use_super_and_code() {
    let tree = |core: &'static str, engine: &'static str| {
        check(&[
            LIB,
            ("stores/mod.rs", "pub(crate) mod memory;"),
            ("stores/memory/mod.rs", "mod engine; pub struct MemoryStore;"),
            ("stores/memory/engine/mod.rs", engine),
            ("clock.rs", core),
            ("store.rs", ""),
        ])
    };
    assert_eq!(
        tree("use crate::store::X;", "use crate::clock::Clock; use super::super::memory;"),
        vec![
            "src/stores/memory/engine/mod.rs:1: `super::super::memory` runs up from Engine to MemoryStore (src/stores/memory/mod.rs)"
        ]
    );
    let found = tree("fn f() { crate::stores::memory::MemoryStore::new() }", "");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("runs up from Core to MemoryStore"), "{found:?}");
    // Inside an inline module, `super` is the file's own module.
    assert_eq!(tree("", "mod tests { use super::*; }"), Vec::<String>::new());
    // Comments and strings are not code.
    assert_eq!(
        tree("// crate::stores::memory::X\nconst S: &str = \"crate::stores::memory\";", ""),
        Vec::<String>::new()
    );
}

#[test]
fn test_code_may_reach_up_but_not_through_the_facade() {
    let files = |engine: &'static str| {
        check(&[
            LIB,
            ("stores/mod.rs", "pub(crate) mod memory;"),
            ("stores/memory/mod.rs", "mod engine; pub struct S;"),
            ("stores/memory/engine/mod.rs", engine),
            ("stores/memory/engine/slab_tests.rs", "mod deeper;"),
            ("stores/memory/engine/slab_tests/deeper.rs", "use crate::stores::memory::S;"),
            ("store.rs", ""),
        ])
    };
    // A test module inline, and a test file and the file it declares.
    let up = "#[cfg(test)]\nmod tests { use crate::stores::memory::S; }\n#[cfg(all(test, not(miri)))] mod slab_tests;";
    assert_eq!(files(up), Vec::<String>::new());
    let found = files("mod slab_tests;");
    assert_eq!(found.len(), 1, "not for tests: {found:?}");
    assert!(found[0].starts_with("src/stores/memory/engine/slab_tests/deeper.rs:1:"), "{found:?}");
    assert_eq!(files("#[cfg(test)] mod tests { use crate::Metadata; }").len(), 2, "the facade rule holds for tests");
    let found = files("#[cfg(any(test, feature = \"js\"))] mod slots { use crate::stores::memory::S; }");
    assert_eq!(found.len(), 2, "cfg(any(test, ..)) is not test-only: {found:?}");
}

#[test]
fn a_path_attribute_is_caught() {
    let found = check(&[LIB, ("clock.rs", "#[path = \"wasm/host.rs\"]\nmod host;")]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("src/clock.rs:1: `#[path]`"), "{found:?}");
}
