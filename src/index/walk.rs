//! Walking one directory of the archive into its block of index lines: every
//! path below it, each prefixed with the directory's path in the archive,
//! sorted by bytes. The block is the unit the index caches and merges.

use std::ffi::OsStr;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One walked directory: its lines (each ending in `\n`, sorted by bytes) and
/// what went wrong on the way.
#[derive(Debug, Default)]
pub struct Block {
    pub text: Vec<u8>,
    pub lines: u64,
    /// Directories that could not be read: the block is incomplete and must
    /// not be cached.
    pub errors: Vec<String>,
    /// Names that cannot be one line of the index (they hold a newline):
    /// left out, with their subtree.
    pub unlisted: Vec<String>,
}

/// Walks `dir` (an archive directory whose index path is `prefix`, ending in
/// `/`). Symlinks are listed, never followed. A `dir` that vanished under us
/// (aged away during the walk) gives an empty block, not an error.
pub fn walk(dir: &Path, prefix: &[u8]) -> Block {
    let mut block = Block::default();
    // All paths live in one arena; `spans` index it. Few allocations: the
    // arena, the spans and one PathBuf per directory.
    let mut arena: Vec<u8> = Vec::with_capacity(4096);
    let mut spans: Vec<(usize, usize)> = Vec::with_capacity(64);
    // Directories still to read: file-system path and the index path's span.
    let mut pending: Vec<(PathBuf, (usize, usize))> = Vec::new();
    arena.extend_from_slice(prefix);
    let top = (0, prefix.len());
    pending.push((dir.to_path_buf(), top));
    while let Some((path, (start, len))) = pending.pop() {
        let entries = match std::fs::read_dir(&path) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound && (start, len) == top => break,
            Err(e) => {
                block
                    .errors
                    .push(format!("cannot read {}: {e}", path.display()));
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    block
                        .errors
                        .push(format!("cannot read {}: {e}", path.display()));
                    break;
                }
            };
            let name = entry.file_name();
            let name = name.as_bytes();
            if name.contains(&b'\n') {
                block.unlisted.push(
                    path.join(OsStr::from_bytes(name))
                        .display()
                        .to_string()
                        .escape_default()
                        .to_string(),
                );
                continue;
            }
            let at = arena.len();
            // The parent's index path, then a slash unless it is the prefix
            // (which ends in one already), then the name.
            arena.extend_from_within(start..start + len);
            if (start, len) != top {
                arena.push(b'/');
            }
            arena.extend_from_slice(name);
            let span = (at, arena.len() - at);
            spans.push(span);
            // d_type from the directory read: no stat per entry. A symlink
            // to a directory is not a directory here, so it is not followed.
            let is_dir = match entry.file_type() {
                Ok(t) => t.is_dir(),
                Err(e) => {
                    block
                        .errors
                        .push(format!("cannot read {}: {e}", entry.path().display()));
                    false
                }
            };
            if is_dir {
                pending.push((path.join(OsStr::from_bytes(name)), span));
            }
        }
    }
    spans.sort_unstable_by(|a, b| arena[a.0..a.0 + a.1].cmp(&arena[b.0..b.0 + b.1]));
    let bytes: usize = spans.iter().map(|s| s.1 + 1).sum();
    block.text.reserve_exact(bytes);
    for (at, len) in &spans {
        block.text.extend_from_slice(&arena[*at..*at + *len]);
        block.text.push(b'\n');
    }
    block.lines = spans.len() as u64;
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_everything_below_sorted_by_bytes_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let v = dir.path().join("1.0");
        std::fs::create_dir_all(v.join("a/b")).unwrap();
        std::fs::create_dir_all(v.join(".hidden")).unwrap();
        std::fs::write(v.join("a.x"), "").unwrap();
        std::fs::write(v.join("a/b/c"), "").unwrap();
        std::fs::write(v.join("descpkg"), "").unwrap();
        std::os::unix::fs::symlink("a", v.join("link")).unwrap();
        std::fs::write(v.join("bad\nname"), "").unwrap();
        let block = walk(&v, b"p/1.0/");
        // '.' sorts before '/', so a.x comes between a and a/b: byte order,
        // as `LC_ALL=C sort` gives, not tree order.
        assert_eq!(
            String::from_utf8(block.text).unwrap(),
            "p/1.0/.hidden\np/1.0/a\np/1.0/a.x\np/1.0/a/b\np/1.0/a/b/c\np/1.0/descpkg\np/1.0/link\n"
        );
        assert_eq!(block.lines, 7);
        assert!(block.errors.is_empty());
        assert_eq!(block.unlisted.len(), 1);
        assert!(
            block.unlisted[0].contains("bad\\nname"),
            "{:?}",
            block.unlisted
        );
    }

    #[test]
    fn unreadable_directory_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "").unwrap();
        let block = walk(&file, b"p/x/");
        assert!(block.text.is_empty());
        assert_eq!(block.errors.len(), 1, "{:?}", block.errors);
        assert!(
            block.errors[0].starts_with(&format!("cannot read {}: ", file.display())),
            "{:?}",
            block.errors
        );
    }

    #[test]
    fn vanished_directory_is_an_empty_block() {
        let dir = tempfile::tempdir().unwrap();
        let block = walk(&dir.path().join("gone"), b"p/gone/");
        assert!(block.text.is_empty());
        assert!(block.errors.is_empty());
    }
}
