//! Zip and tar (plain or gzip) archives: every member is scanned as a file named
//! `archive!member`. Members are read with a size cap, so a decompression bomb costs
//! at most `max_size` bytes per member; nested archives are opened up to a depth.

use crate::scanner::Scanner;
use crate::source::Sink;
use std::io::{Read, Seek};

/// Archives inside archives are opened this deep, no deeper.
const MAX_NESTING: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Zip,
    Tar,
    TarGz,
}

/// The archive kind a file name suggests.
pub fn kind_of(name: &str) -> Option<Kind> {
    let n = name.to_ascii_lowercase();
    if [
        ".zip", ".jar", ".war", ".ear", ".whl", ".nupkg", ".apk", ".aar", ".vsix",
    ]
    .iter()
    .any(|e| n.ends_with(e))
    {
        Some(Kind::Zip)
    } else if n.ends_with(".tar.gz") || n.ends_with(".tgz") || n.ends_with(".crate") {
        Some(Kind::TarGz)
    } else if n.ends_with(".tar") {
        Some(Kind::Tar)
    } else {
        None
    }
}

/// Scans an archive read from `reader`, reporting members as `display!member`.
pub fn scan<R: Read + Seek>(
    scanner: &Scanner,
    sink: &Sink,
    display: &str,
    kind: Kind,
    reader: R,
    depth: u8,
) {
    let result = match kind {
        Kind::Zip => scan_zip(scanner, sink, display, reader, depth),
        Kind::Tar => scan_tar(scanner, sink, display, reader, depth),
        Kind::TarGz => scan_tar(
            scanner,
            sink,
            display,
            flate2::read::GzDecoder::new(reader),
            depth,
        ),
    };
    if let Err(e) = result {
        sink.warn(format!("{display}: cannot read archive: {e}"));
    }
}

fn read_capped(scanner: &Scanner, r: impl Read, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    buf.clear();
    r.take(scanner.max_size + 1).read_to_end(buf)?;
    Ok(scanner.accept_size(buf.len() as u64))
}

fn member(scanner: &Scanner, sink: &Sink, name: &str, data: &[u8], depth: u8) {
    match kind_of(name) {
        Some(kind) if depth < MAX_NESTING => scan(
            scanner,
            sink,
            name,
            kind,
            std::io::Cursor::new(data),
            depth + 1,
        ),
        _ => sink.push(scanner.scan_blob(name, data, None)),
    }
}

fn scan_zip<R: Read + Seek>(
    scanner: &Scanner,
    sink: &Sink,
    display: &str,
    reader: R,
    depth: u8,
) -> Result<(), String> {
    let mut zip = zip::ZipArchive::new(reader).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    for i in 0..zip.len() {
        let file = match zip.by_index(i) {
            Ok(f) => f,
            Err(e) => {
                sink.warn(format!("{display}: member {i}: {e}"));
                continue;
            }
        };
        if file.is_dir() {
            continue;
        }
        let name = format!("{display}!{}", file.name());
        match read_capped(scanner, file, &mut buf) {
            Ok(true) => member(scanner, sink, &name, &buf, depth),
            Ok(false) => {}
            Err(e) => sink.warn(format!("{name}: {e}")),
        }
    }
    Ok(())
}

fn scan_tar<R: Read>(
    scanner: &Scanner,
    sink: &Sink,
    display: &str,
    reader: R,
    depth: u8,
) -> Result<(), String> {
    let mut tar = tar::Archive::new(reader);
    let mut buf = Vec::new();
    for entry in tar.entries().map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = format!("{display}!{}", String::from_utf8_lossy(&entry.path_bytes()));
        match read_capped(scanner, entry, &mut buf) {
            Ok(true) => member(scanner, sink, &name, &buf, depth),
            Ok(false) => {}
            Err(e) => sink.warn(format!("{name}: {e}")),
        }
    }
    Ok(())
}
