//! Plumbing that lets download, decryption and disk writes overlap: a reader fed by
//! an async task through a bounded channel, and a writer that hands full buffers to a
//! thread of its own. Memory stays bounded by the channel capacities.

use std::io::{self, Read, Seek, Write};
use std::sync::mpsc;
use std::thread::JoinHandle;

use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};

/// Chunks the network task may run ahead of the decryptor.
const READ_AHEAD: usize = 8;
/// Size of each buffer handed to the writer thread.
const WRITE_BUF: usize = 1 << 20;
/// Buffers the decryptor may run ahead of the disk.
const WRITE_AHEAD: usize = 2;

/// A blocking `Read` over an async byte stream, pumped by a spawned task.
#[derive(Debug)]
pub struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
    done: bool,
}

impl ChannelReader {
    /// Spawns the pump on the current runtime. Must be read from a blocking thread.
    pub fn spawn<S>(stream: S) -> Self
    where
        S: Stream<Item = io::Result<Bytes>> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        Self {
            rx,
            current: Bytes::new(),
            done: false,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.done {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                None => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// A `Write` that fills 1 MiB buffers and writes them on a thread of its own.
#[derive(Debug)]
pub struct ThreadedWriter {
    buf: Vec<u8>,
    tx: Option<mpsc::SyncSender<Vec<u8>>>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl ThreadedWriter {
    /// Starts the writer thread over `out`, appending from its current position.
    pub fn new(mut out: std::fs::File) -> Self {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(WRITE_AHEAD);
        let thread = std::thread::spawn(move || {
            let mut behind = WriteBehind::at(out.stream_position()?);
            for piece in rx {
                out.write_all(&piece)?;
                behind.wrote(&out, piece.len() as u64);
            }
            out.flush()
        });
        Self {
            buf: Vec::with_capacity(WRITE_BUF),
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(WRITE_BUF));
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| io::Error::other("writer closed"))?;
        if tx.send(full).is_err() {
            // The thread stopped on an error: report it.
            return Err(self
                .join()
                .err()
                .unwrap_or_else(|| io::Error::other("writer stopped")));
        }
        Ok(())
    }

    fn join(&mut self) -> io::Result<()> {
        self.tx = None;
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("writer thread panicked"))?,
            None => Ok(()),
        }
    }

    /// Writes what is buffered, waits for the thread and reports its outcome.
    pub fn finish(mut self) -> io::Result<()> {
        self.send()?;
        self.join()
    }
}

/// Starts the disk writing what was written a window ago, so the sync at the end
/// (the file is synced before it is renamed into place) waits for the last window,
/// not for the whole file, and the disk works while the download is still running.
/// Without it, a multi-GB file sits in the page cache until the kernel's dirty
/// threshold and the final sync then writes gigabytes at once. Windows written back
/// since leave the page cache: their memory serves the next windows, instead of the
/// kernel finding fresh pages for all of the file and pushing out older ones.
#[derive(Debug)]
struct WriteBehind {
    /// Where the file's writing started.
    start: u64,
    /// Start of the bytes not yet handed to the disk.
    flushed_to: u64,
    /// Bytes written so far (file offset).
    written_to: u64,
}

/// Bytes per write-behind step.
const WRITE_BEHIND: u64 = 16 << 20;

/// Windows behind the newest one that are asked to leave the page cache again at
/// each step: one still being written back is skipped, and dropped a step later.
const DROP_RETRIES: u64 = 4;

impl WriteBehind {
    fn at(offset: u64) -> Self {
        Self {
            start: offset,
            flushed_to: offset,
            written_to: offset,
        }
    }

    fn wrote(&mut self, file: &std::fs::File, len: u64) {
        self.written_to += len;
        if self.written_to - self.flushed_to >= WRITE_BEHIND {
            // POSIX_FADV_DONTNEED drops a range's clean pages and starts writeback of
            // its dirty ones without waiting for it: given for the windows before
            // (drop) and for the new one (writeback). A hint, so its failure only
            // costs speed.
            let behind = self
                .flushed_to
                .saturating_sub(DROP_RETRIES * WRITE_BEHIND)
                .max(self.start);
            advise_dont_need(file, behind, self.flushed_to);
            advise_dont_need(file, self.flushed_to, self.written_to);
            self.flushed_to = self.written_to;
        }
    }
}

fn advise_dont_need(file: &std::fs::File, from: u64, to: u64) {
    if let Some(len) = std::num::NonZeroU64::new(to.saturating_sub(from)) {
        let _ = rustix::fs::fadvise(file, from, Some(len), rustix::fs::Advice::DontNeed);
    }
}

impl Write for ThreadedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = WRITE_BUF - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == WRITE_BUF {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Buffers are handed over when full or at `finish`; the decryptor's flushes
        // need not force a small write.
        Ok(())
    }
}

impl Drop for ThreadedWriter {
    fn drop(&mut self) {
        let _ = self.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_writes_everything_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let file = std::fs::File::create(&path).unwrap();
        let mut w = ThreadedWriter::new(file);
        let data: Vec<u8> = (0..3_500_000u32).map(|i| (i * 31 % 251) as u8).collect();
        for piece in data.chunks(70_001) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }

    #[test]
    fn a_written_file_leaves_the_page_cache_behind_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        // 0x01021994: TMPFS_MAGIC, which rustix does not name.
        let on_tmpfs = rustix::fs::statfs(dir.path()).is_ok_and(|s| s.f_type == 0x0102_1994);
        let mut w = ThreadedWriter::new(std::fs::File::create(&path).unwrap());
        // 128 MiB at the pace of a fast download (~250 MB/s), which the disk keeps up
        // with: each window is written back before the writer is far past it.
        let piece = vec![3u8; 1 << 20];
        for _ in 0..128 {
            w.write_all(&piece).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(4));
        }
        w.finish().unwrap();
        let out = std::process::Command::new("fincore")
            .args(["--bytes", "--noheadings", "--raw", "--output", "RES"])
            .arg(&path)
            .output();
        let cached: u64 = match out {
            Ok(out) if out.status.success() && !on_tmpfs => {
                String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
            }
            _ => {
                eprintln!("skipped: cannot tell what of {} is cached", path.display());
                return;
            }
        };
        assert!(
            cached <= 64 << 20,
            "{cached} bytes of the 128 MiB written are still cached"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reader_yields_the_stream_then_errors() {
        let items: Vec<io::Result<Bytes>> = vec![
            Ok(Bytes::from_static(b"hello ")),
            Ok(Bytes::from_static(b"world")),
            Err(io::Error::other("cut")),
        ];
        let mut r = ChannelReader::spawn(futures_util::stream::iter(items));
        let (text, err) = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let err = r.read_to_end(&mut out).unwrap_err();
            (out, err)
        })
        .await
        .unwrap();
        assert_eq!(text, b"hello world");
        assert_eq!(err.to_string(), "cut");
    }
}
