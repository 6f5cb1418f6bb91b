//! The broker's small JSON metadata files under `<store_dir>/config/` (topics, consumer
//! offsets, delay offsets, transaction scan offsets): read with a default when absent, written
//! atomically and durably (the directory is fsynced after the rename). Not on the data path.
//! Temp files a killed process left behind are removed when the shard opens.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::error::BrokerError;

/// Reads and parses `path`; a missing file gives `T::default()`. A file that exists but does
/// not parse is an error (never silently replaced by the default).
pub fn read_json_or_default<T: DeserializeOwned + Default>(path: &Path) -> Result<T, BrokerError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice::<T>(&bytes).map_err(|source| BrokerError::ConfigFileInvalid {
                path: path.to_path_buf(),
                source,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(source) => Err(BrokerError::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes `bytes` to `path` through a temp file, fdatasync, rename and an fsync of the
/// directory, so a crash (power loss included) leaves either the old or the new content.
pub async fn write_file_atomically(path: &Path, bytes: Vec<u8>) -> Result<(), BrokerError> {
    thread_local! {
        static TMP_COUNTER: Cell<u64> = const { Cell::new(0) };
    }
    // A distinct temp name per write: two writes of the same file never share a temp file.
    let n = TMP_COUNTER.with(|c| {
        let n = c.get();
        c.set(n.wrapping_add(1));
        n
    });
    let tmp = path.with_extension(format!("json.tmp{n}"));
    let io = |op: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |e: glommio::GlommioError<()>| BrokerError::Io {
            op,
            path: p,
            source: std::io::Error::from(e),
        }
    };
    let file = glommio::io::BufferedFile::create(&tmp)
        .await
        .map_err(io("create", &tmp))?;
    let written = file.write_at(bytes, 0).await;
    let synced = match written {
        Ok(_) => file.fdatasync().await.map_err(io("fdatasync", &tmp)),
        Err(e) => Err(io("write", &tmp)(e)),
    };
    let closed = file.close().await.map_err(io("close", &tmp));
    synced?;
    closed?;
    glommio::io::rename(&tmp, path)
        .await
        .map_err(io("rename", path))?;
    sync_parent_dir(path).await
}

/// Whether `name` is a temp file of `write_file_atomically` (`<name>.json.tmp<N>`).
fn is_temp_file_name(name: &str) -> bool {
    name.rsplit_once(".json.tmp").is_some_and(|(stem, n)| {
        !stem.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Removes the temp files of interrupted atomic writes (a process killed between creating the
/// temp file and renaming it) from `dir`; returns how many. Call it before any write starts in
/// `dir` (at shard open): a temp file of a write in progress would go too. Nothing reads them,
/// so their removal need not be durable.
pub fn remove_stale_temp_files(dir: &Path) -> Result<usize, BrokerError> {
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| BrokerError::Io { op, path, source }
    };
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).map_err(io("list directory", dir))? {
        let entry = entry.map_err(io("list directory", dir))?;
        let is_temp = entry.file_name().to_str().is_some_and(is_temp_file_name);
        if !is_temp || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_file(&path) {
            Ok(()) => {
                log::info!(
                    "removed the temp file of an interrupted write: {}",
                    path.display()
                );
                removed += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", &path)(e)),
        }
    }
    Ok(removed)
}

/// fsyncs the directory holding `path`, so a rename (or creation) in it survives a power loss.
/// The fsync runs on glommio's blocking pool: a journal commit must not stall the shard.
pub async fn sync_parent_dir(path: &Path) -> Result<(), BrokerError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let synced_dir = dir.clone();
    glommio::executor()
        .spawn_blocking(move || std::fs::File::open(&synced_dir)?.sync_all())
        .await
        .map_err(|source| BrokerError::Io {
            op: "fsync directory",
            path: dir,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || async move { f().await })
            .expect("executor")
            .join()
            .expect("join");
    }

    #[test]
    fn atomic_write_replaces_the_content_and_leaves_no_temp_file() {
        run(|| async {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("topics.json");
            write_file_atomically(&path, b"{\"a\":1}".to_vec())
                .await
                .expect("first write");
            write_file_atomically(&path, b"{\"a\":2}".to_vec())
                .await
                .expect("second write");
            assert_eq!(std::fs::read(&path).expect("read"), b"{\"a\":2}");
            let names: Vec<String> = std::fs::read_dir(dir.path())
                .expect("list")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(names, vec!["topics.json".to_string()]);
        });
    }

    #[test]
    fn stale_temp_files_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = [
            "topics.json",
            "topics.json.tmp0",
            "consumerOffset.json.tmp17",
            "delayOffset.json.tmp",
            "topics.json.tmp1x",
            "notes.tmp3",
            ".json.tmp4",
        ];
        for n in names {
            std::fs::write(dir.path().join(n), b"{}").expect("write");
        }
        std::fs::create_dir(dir.path().join("sub.json.tmp5")).expect("mkdir");
        let removed = remove_stale_temp_files(dir.path()).expect("remove");
        assert_eq!(removed, 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".json.tmp4",
                "delayOffset.json.tmp",
                "notes.tmp3",
                "sub.json.tmp5",
                "topics.json",
                "topics.json.tmp1x"
            ]
        );
    }

    #[test]
    fn a_directory_fsync_error_names_the_directory() {
        run(|| async {
            let dir = tempfile::tempdir().expect("tempdir");
            let missing = dir.path().join("gone");
            let e = sync_parent_dir(&missing.join("topics.json"))
                .await
                .expect_err("no such directory");
            let text = e.to_string();
            assert!(text.starts_with("fsync directory "), "{text}");
            assert!(text.contains(&missing.display().to_string()), "{text}");
        });
    }
}
