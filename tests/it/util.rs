//! Shared helpers: where the fixtures and the real `litestream` binaries are, reading a
//! replica directory, and applying LTX files to a database image in memory.

use ltxvfs::ltx::{self, FileSummary, Pgno, Txid};
use ltxvfs::replica::{LtxFileId, restore_plan};
use std::path::{Path, PathBuf};

/// The repository root (this file is shared with `tests-sqlite/`, one level down).
pub fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|p| p.join("tests/fixtures").is_dir())
        .expect("the repository root, holding tests/fixtures")
        .to_path_buf()
}

/// The Litestream versions whose files the tests read: 0.5.15 writes the legacy frame
/// encoding, 0.5.17 the block encoding.
pub const LITESTREAM_VERSIONS: [&str; 2] = ["0.5.15", "0.5.17"];

/// The fixture directories made by `tests/fixtures/make_fixtures.py`: the checked-in ones,
/// plus the ones `make test` writes afresh with the pinned binaries (`LTXVFS_LIVE_FIXTURES`).
pub fn fixture_roots() -> Vec<(String, PathBuf)> {
    let mut roots = Vec::new();
    for version in LITESTREAM_VERSIONS {
        let dir = repo_dir()
            .join("tests/fixtures")
            .join(format!("litestream-{version}"));
        assert!(dir.is_dir(), "missing fixtures {}", dir.display());
        roots.push((version.to_string(), dir));
    }
    if let Some(live) = std::env::var_os("LTXVFS_LIVE_FIXTURES") {
        for version in LITESTREAM_VERSIONS {
            let dir = Path::new(&live).join(format!("litestream-{version}"));
            assert!(
                dir.is_dir(),
                "LTXVFS_LIVE_FIXTURES has no {}",
                dir.display()
            );
            roots.push((version.to_string(), dir));
        }
    }
    roots
}

/// The real `litestream` binary of `version`, installed by `make tools` (or named by
/// `LTXVFS_LITESTREAM_<version with underscores>`).
pub fn litestream_bin(version: &str) -> PathBuf {
    let var = format!("LTXVFS_LITESTREAM_{}", version.replace('.', "_"));
    let path = std::env::var_os(&var)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            repo_dir()
                .join(".tools")
                .join(format!("litestream-{version}"))
                .join("bin/litestream")
        });
    assert!(
        path.is_file(),
        "litestream {version} not found at {} (run `make tools`, or set {var})",
        path.display()
    );
    path
}

/// Every LTX file of a replica directory (`<root>/ltx/<level>/<name>`), with its bytes.
pub fn replica_files(root: &Path) -> Vec<(LtxFileId, PathBuf)> {
    let mut files = Vec::new();
    for level_dir in std::fs::read_dir(root.join("ltx")).unwrap() {
        let level_dir = level_dir.unwrap().path();
        let level: u8 = level_dir
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        for f in std::fs::read_dir(&level_dir).unwrap() {
            let path = f.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap();
            let id = LtxFileId::parse(level, name)
                .unwrap_or_else(|| panic!("not an LTX file name: {}", path.display()));
            files.push((id, path));
        }
    }
    files.sort();
    files
}

/// Applies one LTX file to a database image: a snapshot replaces it; every file then writes
/// its pages and truncates or extends the image to its commit.
pub fn apply(db: &mut Vec<u8>, bytes: &[u8]) -> FileSummary {
    let mut pages: Vec<(Pgno, Vec<u8>)> = Vec::new();
    let summary = ltx::decode_file(bytes, |pgno, data| {
        pages.push((pgno, data.to_vec()));
        Ok(())
    })
    .unwrap();
    let ps = summary.header.page_size.as_usize();
    if summary.header.is_snapshot() {
        db.clear();
    }
    assert_eq!(
        db.len() % ps,
        0,
        "database image is not a whole number of pages"
    );
    let len = summary.header.commit as usize * ps;
    db.resize(db.len().max(len), 0);
    for (pgno, data) in pages {
        let at = pgno.byte_offset(summary.header.page_size) as usize;
        db[at..at + ps].copy_from_slice(&data);
    }
    db.truncate(len);
    summary
}

/// The database image a restore of `root` to `target` gives, by our plan and our decoder.
pub fn restore_in_memory(root: &Path, target: Option<Txid>) -> Vec<u8> {
    let files = replica_files(root);
    let ids: Vec<LtxFileId> = files.iter().map(|(id, _)| *id).collect();
    let plan = restore_plan(&ids, target).unwrap();
    let mut db = Vec::new();
    for id in plan {
        let path = &files.iter().find(|(f, _)| *f == id).unwrap().1;
        apply(&mut db, &std::fs::read(path).unwrap());
    }
    db
}

/// A fresh scratch directory under `target/`, removed first if a previous run left it.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = repo_dir().join("target/test-scratch").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
