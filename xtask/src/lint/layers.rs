//! The agent's layering, checked: each top-level module of `monitor` may import only the layers
//! listed for it below, and within a folder no two sibling modules may import each other, even
//! through others. ARCHITECTURE.md draws the same table.
//!
//! The check reads the source with `syn`: every `use` and every path in code that starts with
//! `crate`, `self`, `super` or a child module's name is resolved to the module it names. Code
//! under `#[cfg(test)]` is left out (tests may drive a layer from above), as is the `testing`
//! module itself.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use syn::visit::Visit;

/// A crate's layer table: per top-level module, the top-level modules it may import; `top`
/// may import every one; a module without a row may import `others`, or, when that is `None`,
/// is itself a problem (a new layer has to be placed in the table).
pub struct Layers {
    pub rows: &'static [(&'static str, &'static [&'static str])],
    pub top: Option<&'static str>,
    pub others: Option<&'static [&'static str]>,
}

/// The agent (`monitor/src`). `format` is a leaf any layer may use; it imports nothing.
/// `privileges` reads what it decides on (tracefs, the running kernel's settings) through
/// `host`. The command line is the top.
pub const AGENT: Layers = Layers {
    rows: AGENT_ROWS,
    top: Some("cli"),
    others: None,
};

/// The kernel programs (`monitor-ebpf/src`): the shared pieces import nothing but the
/// diagnostics log and the atomic add (the change counters of `vmms`), and every other module
/// is a family, which uses the shared pieces and never
/// another family.
pub const KERNEL: Layers = Layers {
    rows: &[
        ("diagnostics", &[]),
        ("vmms", &["atomic"]),
        ("places", &[]),
        ("program", &[]),
        ("record", &[]),
        ("atomic", &[]),
        ("raw", &["diagnostics"]),
    ],
    top: None,
    others: Some(&[
        "diagnostics",
        "vmms",
        "places",
        "program",
        "record",
        "atomic",
        "raw",
    ]),
};

const AGENT_ROWS: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("format", &[]),
    ("host", &["model"]),
    ("privileges", &["host"]),
    ("discovery", &["model", "host", "privileges"]),
    ("bpf", &["model", "host", "privileges"]),
    ("family", &["model", "host", "discovery", "bpf"]),
    ("families", &["model", "host", "discovery", "bpf", "family"]),
    (
        "session",
        &[
            "model",
            "privileges",
            "host",
            "discovery",
            "bpf",
            "family",
            "families",
        ],
    ),
    ("advice", &["model", "host", "discovery"]),
    ("output", &["model", "format"]),
    ("tui", &["model", "format", "recording", "control"]),
    ("recording", &["model"]),
    ("report", &["model", "recording"]),
    ("control", &["model"]),
    (
        "app",
        &[
            "model",
            "format",
            "privileges",
            "host",
            "discovery",
            "bpf",
            "family",
            "families",
            "session",
            "advice",
            "output",
            "tui",
            "recording",
            "report",
            "control",
        ],
    ),
];

/// Modules the check does not look into.
const EXEMPT: &[&str] = &["testing"];

/// A module, as its path below the crate root (`["families", "exits", "window"]`).
type ModPath = Vec<String>;

/// One import of one module by another, with where it was written.
struct Import {
    from: ModPath,
    to: ModPath,
    file: PathBuf,
    line: usize,
}

/// Checks the crate whose `src` is `root`; the problems found, one per line, or none.
pub fn check(root: &Path, layers: &Layers) -> anyhow::Result<Vec<String>> {
    let files = module_files(root)?;
    let modules: BTreeSet<ModPath> = files.keys().cloned().collect();
    let mut parsed = BTreeMap::new();
    for (module, file) in &files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let ast = syn::parse_file(&text).with_context(|| format!("parsing {}", file.display()))?;
        parsed.insert(module.clone(), ast);
    }
    // `#[cfg(test)] mod tests;` puts a whole file (and its children) under test.
    let mut test_only: BTreeSet<ModPath> = EXEMPT.iter().map(|m| vec![(*m).to_owned()]).collect();
    for (module, ast) in &parsed {
        for item in &ast.items {
            if let syn::Item::Mod(declared) = item
                && declared.content.is_none()
                && is_test_only(&declared.attrs)
            {
                let mut child = module.clone();
                child.push(declared.ident.to_string());
                test_only.insert(child);
            }
        }
    }
    let mut imports = Vec::new();
    for (module, ast) in &parsed {
        if test_only.iter().any(|t| module.starts_with(t)) {
            continue;
        }
        let file = &files[module];
        let mut visitor = Imports {
            modules: &modules,
            file_module: module.clone(),
            inline: Vec::new(),
            file,
            found: &mut imports,
        };
        visitor.visit_file(ast);
    }
    let mut problems = layer_problems(&imports, layers);
    problems.extend(cycle_problems(&imports));
    Ok(problems)
}

/// Every module file of the crate, by module path (`lib.rs` and `main.rs` are the root).
fn module_files(root: &Path) -> anyhow::Result<BTreeMap<ModPath, PathBuf>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(root)?.with_extension("");
            let mut module: ModPath = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|m| m == "mod") {
                module.pop();
            }
            if module.len() == 1 && (module[0] == "lib" || module[0] == "main") {
                continue;
            }
            files.insert(module, path);
        }
    }
    Ok(files)
}

/// Collects the imports of one file.
struct Imports<'a> {
    modules: &'a BTreeSet<ModPath>,
    file_module: ModPath,
    /// Inline `mod name { … }` blocks the visitor is inside.
    inline: Vec<String>,
    file: &'a Path,
    found: &'a mut Vec<Import>,
}

impl Imports<'_> {
    fn current(&self) -> ModPath {
        let mut module = self.file_module.clone();
        module.extend(self.inline.iter().cloned());
        module
    }

    /// The module a path names (its longest prefix that is a module), if it is one of ours.
    fn resolve(&self, segments: &[String]) -> Option<ModPath> {
        let mut base = self.current();
        let mut rest = segments;
        match rest.first().map(String::as_str) {
            Some("crate") => {
                base.clear();
                rest = &rest[1..];
            }
            Some("self") => rest = &rest[1..],
            Some("super") => {
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop()?;
                    rest = &rest[1..];
                }
            }
            Some(first) => {
                // A child module named without `self::`; anything else is another crate, a
                // local item or a prelude name.
                let mut child = base.clone();
                child.push(first.to_owned());
                if !self.modules.contains(&child) {
                    return None;
                }
            }
            None => return None,
        }
        let mut named = base;
        for segment in rest {
            let mut longer = named.clone();
            longer.push(segment.clone());
            if !self.modules.contains(&longer) {
                break;
            }
            named = longer;
        }
        Some(named)
    }

    fn record(&mut self, segments: &[String], line: usize) {
        if let Some(to) = self.resolve(segments) {
            let from = self.file_module.clone();
            self.found.push(Import {
                from,
                to,
                file: self.file.to_path_buf(),
                line,
            });
        }
    }

    /// Every path a `use` tree imports, as segment lists.
    fn use_paths(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                Self::use_paths(&path.tree, prefix, out);
                prefix.pop();
            }
            syn::UseTree::Name(name) => {
                let mut full = prefix.clone();
                if name.ident != "self" {
                    full.push(name.ident.to_string());
                }
                out.push(full);
            }
            syn::UseTree::Rename(rename) => {
                let mut full = prefix.clone();
                full.push(rename.ident.to_string());
                out.push(full);
            }
            syn::UseTree::Glob(_) => out.push(prefix.clone()),
            syn::UseTree::Group(group) => {
                for item in &group.items {
                    Self::use_paths(item, prefix, out);
                }
            }
        }
    }
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg")
            && attr
                .parse_args::<syn::Meta>()
                .is_ok_and(|meta| meta.path().is_ident("test"))
    })
}

impl<'ast> Visit<'ast> for Imports<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Mod(i) => &i.attrs,
            syn::Item::Fn(i) => &i.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(i) => &i.attrs,
            syn::Item::Struct(i) => &i.attrs,
            syn::Item::Enum(i) => &i.attrs,
            syn::Item::Const(i) => &i.attrs,
            syn::Item::Static(i) => &i.attrs,
            syn::Item::Trait(i) => &i.attrs,
            syn::Item::Macro(i) => &i.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if !is_test_only(attrs) {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if item.content.is_some() {
            self.inline.push(item.ident.to_string());
            syn::visit::visit_item_mod(self, item);
            self.inline.pop();
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        let mut paths = Vec::new();
        Self::use_paths(&item.tree, &mut Vec::new(), &mut paths);
        let line = item.use_token.span.start().line;
        for path in paths {
            self.record(&path, line);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.segments.len() > 1 {
            let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
            let line = path
                .segments
                .first()
                .map_or(0, |s| s.ident.span().start().line);
            self.record(&segments, line);
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        // Macro bodies are tokens, not syntax; paths in them are read as far as they parse
        // (`families! { exits: crate::families::exits::Exits, … }` and the like).
        let tokens = mac.tokens.clone();
        let mut segments: Vec<String> = Vec::new();
        let mut last_was_colons = false;
        let flush = |segments: &mut Vec<String>, this: &mut Self| {
            if segments.len() > 1 {
                this.record(segments, 0);
            }
            segments.clear();
        };
        for token in tokens {
            match token {
                proc_macro2::TokenTree::Ident(ident) => {
                    if !last_was_colons {
                        flush(&mut segments, self);
                    }
                    segments.push(ident.to_string());
                    last_was_colons = false;
                }
                proc_macro2::TokenTree::Punct(p) if p.as_char() == ':' => {
                    last_was_colons = true;
                }
                _ => {
                    flush(&mut segments, self);
                    last_was_colons = false;
                }
            }
        }
        flush(&mut segments, self);
        syn::visit::visit_macro(self, mac);
    }
}

fn location(import: &Import) -> String {
    if import.line == 0 {
        import.file.display().to_string()
    } else {
        format!("{}:{}", import.file.display(), import.line)
    }
}

/// Imports of a top-level module the layer table does not allow.
fn layer_problems(imports: &[Import], layers: &Layers) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = layers.rows.iter().copied().collect();
    let mut problems = BTreeSet::new();
    for import in imports {
        let (Some(from), Some(to)) = (import.from.first(), import.to.first()) else {
            continue;
        };
        if from == to {
            continue;
        }
        if layers.top == Some(from.as_str()) {
            continue;
        }
        let Some(may) = allowed.get(from.as_str()).copied().or(layers.others) else {
            problems.insert(format!(
                "{}: module `{from}` has no row in the layer table (xtask/src/lint/layers.rs)",
                location(import)
            ));
            continue;
        };
        if !may.contains(&to.as_str()) {
            problems.insert(format!(
                "{}: `{from}` imports `{}`, a layer it may not use (it may use: {})",
                location(import),
                import.to.join("::"),
                if may.is_empty() {
                    "none".to_owned()
                } else {
                    may.join(", ")
                }
            ));
        }
    }
    problems.into_iter().collect()
}

/// Circles among the sibling modules of each folder: `a` imports `b` (or something inside it)
/// and `b`, directly or through other siblings, imports `a`.
fn cycle_problems(imports: &[Import]) -> Vec<String> {
    // Sibling edges: from the child of the common parent on the importer's side to the child on
    // the imported side.
    let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    let mut witness: BTreeMap<(ModPath, ModPath), String> = BTreeMap::new();
    for import in imports {
        let common = import
            .from
            .iter()
            .zip(&import.to)
            .take_while(|(a, b)| a == b)
            .count();
        if common >= import.from.len() || common >= import.to.len() {
            continue; // a module importing its own parent or child
        }
        let from: ModPath = import.from[..=common].to_vec();
        let to: ModPath = import.to[..=common].to_vec();
        if common == 0 {
            continue; // top-level modules: the layer table speaks for them
        }
        witness
            .entry((from.clone(), to.clone()))
            .or_insert_with(|| location(import));
        edges.entry(from).or_default().insert(to);
    }
    let mut problems = Vec::new();
    let mut reported = BTreeSet::new();
    for start in edges.keys() {
        if let Some(circle) = find_circle(&edges, start) {
            let key: BTreeSet<ModPath> = circle.iter().cloned().collect();
            if !reported.insert(key) {
                continue;
            }
            let mut text = format!("import circle: {}", join_circle(&circle));
            for pair in circle.windows(2) {
                if let Some(at) = witness.get(&(pair[0].clone(), pair[1].clone())) {
                    let _ = write!(
                        text,
                        "\n    {} -> {} at {at}",
                        pair[0].join("::"),
                        pair[1].join("::")
                    );
                }
            }
            problems.push(text);
        }
    }
    problems
}

fn join_circle(circle: &[ModPath]) -> String {
    circle
        .iter()
        .map(|m| m.join("::"))
        .collect::<Vec<_>>()
        .join(" -> ")
}

/// A path of edges from `start` back to itself, if there is one (depth-first).
fn find_circle(
    edges: &BTreeMap<ModPath, BTreeSet<ModPath>>,
    start: &ModPath,
) -> Option<Vec<ModPath>> {
    let mut path = vec![start.clone()];
    let mut seen = BTreeSet::new();
    walk(edges, start, &mut path, &mut seen).then_some(path)
}

fn walk(
    edges: &BTreeMap<ModPath, BTreeSet<ModPath>>,
    start: &ModPath,
    path: &mut Vec<ModPath>,
    seen: &mut BTreeSet<ModPath>,
) -> bool {
    let here = path.last().cloned().unwrap_or_default();
    for next in edges.get(&here).into_iter().flatten() {
        if next == start {
            path.push(next.clone());
            return true;
        }
        if seen.insert(next.clone()) {
            path.push(next.clone());
            if walk(edges, start, path, seen) {
                return true;
            }
            path.pop();
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crate_with(files: &[(&str, &str)]) -> tempdir::Dir {
        let dir = tempdir::Dir::new();
        for (path, text) in files {
            let path = dir.0.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                let path = std::env::temp_dir().join(format!(
                    "xtask-layers-{}-{}",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_nanos()
                ));
                std::fs::create_dir_all(&path).unwrap();
                Self(path)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn a_layer_importing_one_above_it_is_named_with_file_and_line() {
        let dir = crate_with(&[
            ("lib.rs", "pub mod model; pub mod output;"),
            ("model.rs", "\n\nuse crate::output::Thing;\npub struct M;"),
            ("output.rs", "use crate::model::M; pub struct Thing;"),
        ]);
        let problems = check(&dir.0, &AGENT).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("model.rs:3"), "{problems:?}");
        assert!(
            problems[0].contains("`model` imports `output`"),
            "{problems:?}"
        );
    }

    #[test]
    fn test_code_and_paths_in_code_are_told_apart() {
        let dir = crate_with(&[
            ("lib.rs", "pub mod model; pub mod output;"),
            (
                "model.rs",
                "#[cfg(test)]\nmod tests { use crate::output::Thing; }\n\
                 pub fn f() { let _ = crate::output::make(); }",
            ),
            ("output.rs", "pub fn make() {}"),
        ]);
        let problems = check(&dir.0, &AGENT).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("model.rs:3"), "{problems:?}");
    }

    #[test]
    fn sibling_circles_are_found_through_super_and_child_names() {
        let dir = crate_with(&[
            ("lib.rs", "pub mod families;"),
            ("families/mod.rs", "mod a; mod b; mod c;"),
            ("families/a.rs", "use super::b::B; pub struct A;"),
            ("families/b.rs", "pub struct B; fn f() { super::c::g(); }"),
            (
                "families/c.rs",
                "pub fn g() { let _ = crate::families::a::A; }",
            ),
        ]);
        let problems = check(&dir.0, &AGENT).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("families::a -> families::b -> families::c -> families::a"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_child_importing_its_parent_is_no_circle() {
        let dir = crate_with(&[
            ("lib.rs", "pub mod families;"),
            ("families/mod.rs", "mod a; pub struct Shared; use a::A;"),
            ("families/a.rs", "use super::Shared; pub struct A;"),
        ]);
        assert_eq!(check(&dir.0, &AGENT).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_kernel_family_may_use_shared_pieces_but_not_another_family() {
        let dir = crate_with(&[
            ("main.rs", "mod vmms; mod exits; mod sched;"),
            ("vmms.rs", "pub fn watched() -> bool { true }"),
            ("exits/mod.rs", "use crate::vmms::watched;"),
            ("sched/mod.rs", "use crate::exits::Thing;"),
        ]);
        let problems = check(&dir.0, &KERNEL).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("`sched` imports `exits`"),
            "{problems:?}"
        );
    }

    /// The table itself must be a one-way order, or it could allow a circle between layers.
    #[test]
    fn the_layer_table_has_no_circle() {
        fn reaches(rows: &BTreeMap<&str, &[&str]>, from: &str, target: &str, depth: usize) -> bool {
            depth < 64
                && rows
                    .get(from)
                    .into_iter()
                    .flat_map(|may| may.iter())
                    .any(|next| *next == target || reaches(rows, next, target, depth + 1))
        }
        let rows: BTreeMap<&str, &[&str]> = AGENT.rows.iter().copied().collect();
        for layer in rows.keys() {
            assert!(!reaches(&rows, layer, layer, 0), "{layer} reaches itself");
        }
    }

    #[test]
    fn the_agent_and_the_kernel_programs_keep_their_layers() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for (src, layers) in [("monitor/src", &AGENT), ("monitor-ebpf/src", &KERNEL)] {
            let problems = check(&workspace.join(src), layers).unwrap();
            assert!(problems.is_empty(), "{src}:\n{}", problems.join("\n"));
        }
    }
}
