//! Files and directories: a parallel, gitignore-aware walk (the `ignore` crate, as in
//! ripgrep). Hidden files are scanned (`.env` is where keys live); `.git` is not.

use crate::scanner::Scanner;
use crate::source::{archive, Sink};
use crate::suppress::IGNORE_FILE;
use ignore::{WalkBuilder, WalkState};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// How to walk.
#[derive(Debug, Clone)]
pub struct WalkOptions {
    pub threads: usize,
    /// Honour .gitignore, .ignore and global git excludes.
    pub respect_gitignore: bool,
    /// Open zip and tar archives.
    pub archives: bool,
    /// Follow symbolic links.
    pub follow_links: bool,
}

/// Path shown in reports: `./` removed, `/` separators.
pub fn display_path(p: &Path) -> String {
    let s = p.to_string_lossy();
    let s = s.strip_prefix("./").unwrap_or(&s);
    if std::path::MAIN_SEPARATOR == '\\' {
        s.replace('\\', "/")
    } else {
        s.to_string()
    }
}

/// Scans each root (a file or a directory); `base` is the directory against which
/// ignore rules resolve. Errors on single files are warnings in `sink`.
pub fn scan_paths(
    scanner: &Scanner,
    sink: &Sink,
    roots: &[PathBuf],
    base: &Path,
    opts: &WalkOptions,
) {
    let mut builder = WalkBuilder::new(&roots[0]);
    for r in &roots[1..] {
        builder.add(r);
    }
    builder
        .threads(opts.threads)
        .hidden(false)
        .parents(opts.respect_gitignore)
        .git_ignore(opts.respect_gitignore)
        .git_global(opts.respect_gitignore)
        .git_exclude(opts.respect_gitignore)
        .ignore(opts.respect_gitignore)
        .follow_links(opts.follow_links)
        .add_custom_ignore_filename(IGNORE_FILE)
        .filter_entry(|e| !(e.file_name() == ".git" && e.file_type().is_some_and(|t| t.is_dir())));
    builder.build_parallel().run(|| {
        let mut buf = Vec::new();
        Box::new(move |entry| {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    sink.warn(e.to_string());
                    return WalkState::Continue;
                }
            };
            let is_dir = entry.file_type().is_some_and(|t| t.is_dir());
            if scanner
                .suppress
                .path_ignored(&relative(entry.path(), base), is_dir)
            {
                return if is_dir {
                    WalkState::Skip
                } else {
                    WalkState::Continue
                };
            }
            if entry.file_type().is_some_and(|t| t.is_file()) {
                scan_file(scanner, sink, entry.path(), &mut buf, opts.archives);
            }
            WalkState::Continue
        })
    });
}

fn relative(p: &Path, base: &Path) -> String {
    let rel = p.strip_prefix(base).unwrap_or(p);
    display_path(rel)
}

/// Scans one file, reusing `buf` for its contents.
pub fn scan_file(scanner: &Scanner, sink: &Sink, path: &Path, buf: &mut Vec<u8>, archives: bool) {
    let display = display_path(path);
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            sink.warn(format!("{display}: {e}"));
            return;
        }
    };
    if archives {
        if let Some(kind) = archive::kind_of(&display) {
            archive::scan(scanner, sink, &display, kind, file, 0);
            return;
        }
    }
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if !scanner.accept_size(len) {
        return;
    }
    buf.clear();
    if let Err(e) = (&mut file).take(scanner.max_size + 1).read_to_end(buf) {
        sink.warn(format!("{display}: {e}"));
        return;
    }
    sink.push(scanner.scan_blob(&display, buf, None));
}
