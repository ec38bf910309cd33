//! The people CSV hand-off between importUserJob's steps: `csv2db generate-people` writes it,
//! step2 checks it before committing any of its rows.
//!
//! The file appears whole: new content is written to `FILE.tmp`, flushed to disk and renamed
//! over `FILE`, then a manifest `FILE.manifest` (row count, size, SHA-256) is written the same
//! way. The importing step checks the file against the manifest, so a partial or stale file on
//! a shared volume is refused instead of half-imported.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// First names of the original job's generator.
const FIRST_NAMES: &[&str] = &[
    "Stephanie",
    "Christina",
    "Mohammad",
    "Bill",
    "Olive",
    "David",
    "Tom",
    "Ben",
    "Matthew",
    "Rhian",
    "Steven",
    "Gareth",
    "James",
];
/// Last names of the original job's generator.
const LAST_NAMES: &[&str] = &[
    "Fletcher", "Morgan", "Thomas", "Jones", "Roberts", "Brown", "Williams", "Alun", "Green",
    "Farr", "Robinson", "Lee", "Lewis", "Davies", "Smith",
];

/// What the generating step recorded about the file it wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Data rows in the file.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
}

/// The manifest's path for a data file: `FILE.manifest`.
pub fn manifest_path(file: &Path) -> PathBuf {
    sibling(file, "manifest")
}

fn sibling(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".");
    name.push(suffix);
    file.with_file_name(name)
}

/// Appends `count` random "First,Last" rows to `file` (creating it and its directory), atomically,
/// and writes its manifest. Returns the manifest.
pub fn generate(file: &Path, count: u64) -> anyhow::Result<Manifest> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
    }
    let temporary = sibling(file, "tmp");
    {
        let mut out = File::create(&temporary)
            .with_context(|| format!("cannot create {}", temporary.display()))?;
        match File::open(file) {
            Ok(mut existing) => {
                io::copy(&mut existing, &mut out)
                    .with_context(|| format!("cannot copy {}", file.display()))?;
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read {}", file.display()));
            }
        }
        let mut out = BufWriter::new(out);
        let mut rng = fastrand::Rng::new();
        for _ in 0..count {
            let first = FIRST_NAMES[rng.usize(..FIRST_NAMES.len())];
            let last = LAST_NAMES[rng.usize(..LAST_NAMES.len())];
            writeln!(out, "{first},{last}")?;
        }
        let out = out.into_inner().map_err(|error| error.into_error())?;
        out.sync_all()?;
    }
    fs::rename(&temporary, file).with_context(|| {
        format!(
            "cannot rename {} to {}",
            temporary.display(),
            file.display()
        )
    })?;
    let manifest = describe(file)?;
    write_manifest(file, &manifest)?;
    Ok(manifest)
}

/// Counts the rows and hashes the content of `file`.
pub fn describe(file: &Path) -> anyhow::Result<Manifest> {
    let mut input = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 16];
    let (mut bytes, mut rows, mut last) = (0u64, 0u64, b'\n');
    loop {
        let read = input.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        let data = &buffer[..read];
        hasher.update(data);
        bytes += read as u64;
        rows += data.iter().filter(|&&b| b == b'\n').count() as u64;
        last = data[read - 1];
    }
    if last != b'\n' {
        rows += 1;
    }
    let sha256 = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Manifest {
        rows,
        bytes,
        sha256,
    })
}

fn write_manifest(file: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    let path = manifest_path(file);
    let temporary = sibling(&path, "tmp");
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)?;
    out.write_all(serde_json::to_string_pretty(manifest)?.as_bytes())?;
    out.sync_all()?;
    fs::rename(&temporary, &path)?;
    Ok(())
}

/// Reads the manifest step1 wrote next to `file`.
///
/// # Errors
/// When the manifest is missing or unreadable.
pub fn read_manifest(file: &Path) -> anyhow::Result<Manifest> {
    let path = manifest_path(file);
    let text = fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read the manifest {} that step1 writes next to the file (is the volume shared between the steps?)",
            path.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("invalid manifest {}", path.display()))
}

/// Checks `file` against the manifest `expected` before its rows are committed.
///
/// # Errors
/// When the file cannot be read, or its size, row count or checksum differ.
pub fn check(file: &Path, expected: &Manifest) -> anyhow::Result<()> {
    let actual = describe(file)?;
    if actual != *expected {
        bail!(
            "{} does not match its manifest: {} rows, {} bytes, sha256 {} expected, found {} rows, {} bytes, sha256 {}",
            file.display(),
            expected.rows,
            expected.bytes,
            expected.sha256,
            actual.rows,
            actual.bytes,
            actual.sha256
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_appends_whole_rows_and_writes_a_manifest() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("sub/people.csv");
        let first = generate(&file, 10).expect("generate");
        assert_eq!(first.rows, 10);
        let second = generate(&file, 5).expect("append");
        assert_eq!(second.rows, 15);
        let text = fs::read_to_string(&file).expect("read");
        assert_eq!(text.lines().count(), 15);
        assert!(text.lines().all(|line| {
            let (first, last) = line.split_once(',').expect("two fields");
            FIRST_NAMES.contains(&first) && LAST_NAMES.contains(&last)
        }));
        let manifest = read_manifest(&file).expect("a manifest");
        assert_eq!(manifest, second);
        check(&file, &manifest).expect("the file matches");
        assert!(!sibling(&file, "tmp").exists());
    }

    #[test]
    fn a_changed_or_unmanifested_file_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("people.csv");
        let manifest = generate(&file, 3).expect("generate");
        fs::write(&file, "Tom,Jones\n").expect("overwrite");
        let error = check(&file, &manifest).expect_err("changed");
        assert!(
            error.to_string().contains("does not match its manifest"),
            "{error}"
        );
        let other = dir.path().join("other.csv");
        fs::write(&other, "Tom,Jones\n").expect("write");
        let error = read_manifest(&other).expect_err("no manifest");
        assert!(
            format!("{error:#}").contains("other.csv.manifest"),
            "{error:#}"
        );
    }
}
