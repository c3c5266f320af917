//! The parser against real libvirt-generated, hand-written and malformed command lines
//! (`monitor/tests/fixtures/qemu`, see the README there for where each comes from).

mod handwritten;
mod libvirt;

use std::path::PathBuf;

use super::*;

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/qemu")
        .join(name)
}

/// Splits libvirt's `.args` shell form: `\`-newline joins, quotes, leading `VAR=value`s.
fn shell_words(text: &str) -> Vec<String> {
    let text = text.replace("\\\n", "");
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                word.extend(chars.by_ref().take_while(|&c| c != '\''));
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    let is_env = |w: &String| {
        w.split_once('=').is_some_and(|(k, _)| {
            !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
    };
    let env = words.iter().take_while(|w| is_env(w)).count();
    words.split_off(env)
}

pub(crate) fn fixture_args(name: &str) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(fixture_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    if name.ends_with(".cmdline") {
        let bytes = bytes.strip_suffix(b"\0").unwrap_or(&bytes);
        bytes.split(|&b| b == 0).map(<[u8]>::to_vec).collect()
    } else {
        let text = String::from_utf8(bytes).unwrap();
        shell_words(&text)
            .into_iter()
            .map(String::into_bytes)
            .collect()
    }
}

fn parse(name: &str) -> QemuCommandLine {
    QemuCommandLine::parse(&fixture_args(name))
}

fn all_fixtures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixture_path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| {
            let ext = std::path::Path::new(n).extension();
            ext.is_some_and(|e| e == "args" || e == "cmdline")
        })
        .collect();
    names.sort();
    assert!(names.len() >= 15, "fixtures missing: {names:?}");
    names
}

/// `(id, interface, cache, aio)` of each disk.
fn disk_summary(cmd: &QemuCommandLine) -> Vec<(String, String, &'static str, String)> {
    cmd.disks()
        .into_iter()
        .map(|d| {
            (
                d.id.unwrap_or_default(),
                d.interface,
                d.cache.as_str(),
                d.aio.as_str().to_owned(),
            )
        })
        .collect()
}

fn owned(rows: &[(&str, &str, &'static str, &str)]) -> Vec<(String, String, &'static str, String)> {
    rows.iter()
        .map(|(a, b, c, d)| ((*a).to_owned(), (*b).to_owned(), *c, (*d).to_owned()))
        .collect()
}

fn unknown_names(cmd: &QemuCommandLine) -> Vec<&str> {
    cmd.unknown.iter().map(|o| o.name.as_str()).collect()
}
