//! The plaintext's digest on a second core: the keyed BLAKE3 digest of new uploads, or
//! the SHA-256 that older uploads recorded.
//!
//! Hashing (SHA-256 about 1.7 GB/s with SHA-NI) is as costly as the AEAD (3+ GB/s with
//! AVX-512), so doing both on one core would halve throughput. Buffers are shared with a worker
//! thread (an `Arc` each: the worker hashes while the caller encrypts from, or writes
//! out, the same bytes) and come back once hashed; the caller keeps a small fixed pool
//! of them, which is also what bounds memory.

use std::sync::{mpsc, Arc};
use std::thread;

use sha2::{Digest, Sha256};

/// A buffer of the pool. Whoever holds the only reference may write to it.
pub(crate) type SharedBuf = Arc<Vec<u8>>;

/// The writable bytes of a buffer the pool just handed out.
pub(crate) fn writable(buf: &mut SharedBuf) -> &mut [u8] {
    Arc::get_mut(buf).expect("a buffer comes back from the worker with no other owner")
}

/// Which digest a [`HashWorker`] computes.
pub(crate) enum PlainHasher {
    /// SHA-256, what uploads before the keyed digest recorded.
    Sha256(Sha256),
    /// Keyed BLAKE3 of the whole plaintext (see `digest.rs`).
    Keyed(Box<blake3::Hasher>),
}

impl PlainHasher {
    fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(bytes),
            Self::Keyed(h) => {
                h.update(bytes);
            }
        }
    }

    fn finish(self) -> [u8; 32] {
        match self {
            Self::Sha256(h) => h.finalize().into(),
            Self::Keyed(h) => *h.finalize().as_bytes(),
        }
    }
}

/// A digest running on its own thread, fed whole buffers in order.
pub(crate) struct HashWorker {
    jobs: Option<mpsc::SyncSender<(SharedBuf, usize)>>,
    free: mpsc::Receiver<SharedBuf>,
    thread: Option<thread::JoinHandle<[u8; 32]>>,
    hashed: u64,
}

impl HashWorker {
    /// Starts the worker with `buffers` buffers of `size` bytes in circulation.
    pub(crate) fn start(mut hasher: PlainHasher, buffers: usize, size: usize) -> Self {
        let (jobs_tx, jobs_rx) = mpsc::sync_channel::<(SharedBuf, usize)>(buffers);
        let (free_tx, free_rx) = mpsc::sync_channel::<SharedBuf>(buffers);
        for _ in 0..buffers {
            free_tx
                .send(Arc::new(vec![0u8; size]))
                .expect("the channel holds every buffer");
        }
        let thread = thread::Builder::new()
            .name("hashdrop-digest".into())
            .spawn(move || {
                for (buf, len) in jobs_rx {
                    hasher.update(&buf[..len]);
                    // The owner may already be gone after an error; that is fine.
                    let _ = free_tx.send(buf);
                }
                hasher.finish()
            })
            .expect("spawning the hashing thread");
        Self {
            jobs: Some(jobs_tx),
            free: free_rx,
            thread: Some(thread),
            hashed: 0,
        }
    }

    /// A free buffer; waits while all of them are being hashed. The caller must drop
    /// its clones of a submitted buffer before asking for another one.
    pub(crate) fn buffer(&mut self) -> SharedBuf {
        self.free
            .recv()
            .expect("the hashing thread returns every buffer")
    }

    /// Hands `buf[..len]` over for hashing, after everything submitted before. The
    /// caller may go on reading `buf` meanwhile, but not write to it.
    pub(crate) fn submit(&mut self, buf: &SharedBuf, len: usize) {
        self.hashed += len as u64;
        self.jobs
            .as_ref()
            .expect("submit after finish")
            .send((Arc::clone(buf), len))
            .expect("the hashing thread outlives its sender");
    }

    /// Bytes submitted so far.
    pub(crate) fn hashed(&self) -> u64 {
        self.hashed
    }

    /// Waits for the worker and returns the digest of everything submitted.
    pub(crate) fn finish(mut self) -> [u8; 32] {
        drop(self.jobs.take());
        self.thread
            .take()
            .expect("finish called once")
            .join()
            .expect("the hashing thread does not panic")
    }
}

impl std::fmt::Debug for HashWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashWorker")
            .field("hashed", &self.hashed)
            .finish()
    }
}

/// Lowercase hex of a digest, the form the API stores and compares.
pub fn to_hex(digest: &[u8; 32]) -> String {
    use std::fmt::Write;
    digest.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through_worker(hasher: PlainHasher, data: &[u8]) -> [u8; 32] {
        let mut worker = HashWorker::start(hasher, 2, 100_000);
        for piece in data.chunks(100_000) {
            let mut buf = worker.buffer();
            writable(&mut buf)[..piece.len()].copy_from_slice(piece);
            worker.submit(&buf, piece.len());
        }
        assert_eq!(worker.hashed(), data.len() as u64);
        worker.finish()
    }

    #[test]
    fn worker_digests_equal_one_shot_digests() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let sha: [u8; 32] = Sha256::digest(&data).into();
        assert_eq!(
            through_worker(PlainHasher::Sha256(Sha256::new()), &data),
            sha
        );

        let key = [7u8; 32];
        let keyed = PlainHasher::Keyed(Box::new(blake3::Hasher::new_keyed(&key)));
        assert_eq!(
            through_worker(keyed, &data),
            *blake3::keyed_hash(&key, &data).as_bytes()
        );
    }
}
