//! The runtime boundary: every file operation, timer, task queue and lock the broker logic uses goes
//! through here, so the executor (glommio today) could be swapped without touching storage or the
//! server. Files are read and written through io_uring (glommio's buffered files); rare metadata
//! operations (rename, unlink, listing a directory) are plain syscalls.
//!
//! [`Faults`] lets tests make the next writes fail (ENOSPC, EIO, a short write) to show that the
//! log stays consistent.

use std::cell::RefCell;
use std::future::Future;
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use glommio::io::{BufferedFile, OpenOptions};

mod budget;
mod clock;
mod lock;
pub mod net;
pub mod shard;
mod throttle;
mod woken;

pub use throttle::Throttled;
pub use woken::{answer_channel, Answered, Woken};

pub type Result<T> = std::io::Result<T>;

/// An injected failure for the next writes (or syncs) of files opened with the same [`Faults`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Fail each write with this errno (e.g. `libc::ENOSPC`) until cleared.
    FailWrites { errno: i32 },
    /// Write only the first `bytes` of the next write, then fail it with ENOSPC (a torn write).
    ShortWrite { bytes: usize },
    /// Fail each fdatasync with EIO until cleared.
    FailSyncs,
}

/// A shared switchboard of injected faults; the default injects nothing.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    plan: Rc<RefCell<Option<Fault>>>,
}

impl Faults {
    pub fn set(&self, fault: Option<Fault>) {
        *self.plan.borrow_mut() = fault;
    }

    fn on_write(&self) -> Option<Fault> {
        let mut plan = self.plan.borrow_mut();
        match *plan {
            Some(Fault::ShortWrite { bytes }) => {
                *plan = None;
                Some(Fault::ShortWrite { bytes })
            }
            Some(Fault::FailWrites { errno }) => Some(Fault::FailWrites { errno }),
            _ => None,
        }
    }

    fn fails_syncs(&self) -> bool {
        matches!(*self.plan.borrow(), Some(Fault::FailSyncs))
    }
}

/// A file read and written through io_uring. Dropping the last handle closes it; a file that was
/// unlinked stays readable through its open handles.
#[derive(Debug)]
pub struct File {
    inner: BufferedFile,
    path: PathBuf,
    faults: Faults,
    /// A place in a budget of descriptors, given back when the file closes: among the shard's
    /// short-lived files ([`File::open_transient`]) or its loaded segments ([`File::hold`]).
    place: RefCell<Option<Grant>>,
}

/// Descriptors a shard holds at once for files it opens only to write or sync them and close
/// (index files, checkpoints, snapshots, directory syncs). Thousands of partitions whose
/// background work comes due together wait their turn instead of exhausting the process's
/// descriptors.
pub const TRANSIENT_FILES_MAX: usize = 32;

thread_local! {
    static TRANSIENT: Budget = Budget::new(TRANSIENT_FILES_MAX);
}

async fn transient_place() -> Grant {
    let budget = TRANSIENT.with(Budget::clone);
    budget.acquire(1).await
}

impl File {
    /// Opens a file to use briefly (write or sync, then close or drop): it waits for one of the
    /// shard's [`TRANSIENT_FILES_MAX`] places, held until the file is closed.
    pub async fn open_transient(path: &Path, create: bool, faults: &Faults) -> Result<File> {
        let place = transient_place().await;
        let file = File::open(path, create, faults).await?;
        file.hold(place);
        Ok(file)
    }

    /// Opens `path` for reading and writing, creating it if `create`.
    pub async fn open(path: &Path, create: bool, faults: &Faults) -> Result<File> {
        let inner = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .buffered_open(path)
            .await
            .map_err(|e| with_path(e.into(), path))?;
        Ok(File {
            inner,
            path: path.to_path_buf(),
            faults: faults.clone(),
            place: RefCell::new(None),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Holds `place` until the file is closed (its last handle dropped).
    pub fn hold(&self, place: Grant) {
        *self.place.borrow_mut() = Some(place);
    }

    pub fn raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }

    /// Writes all of `buf` at `pos`, or fails; a failure may leave a prefix of it written.
    pub async fn write_at(&self, buf: Vec<u8>, pos: u64) -> Result<()> {
        let mut buf = buf;
        match self.faults.on_write() {
            Some(Fault::FailWrites { errno }) => {
                return Err(self.error(std::io::Error::from_raw_os_error(errno)))
            }
            Some(Fault::ShortWrite { bytes }) => {
                buf.truncate(bytes);
                self.inner
                    .write_at(buf, pos)
                    .await
                    .map_err(|e| self.error(e.into()))?;
                return Err(self.error(std::io::Error::from_raw_os_error(libc_enospc())));
            }
            _ => {}
        }
        // Short writes to a regular file happen only when the disk fills (or on a signal); the
        // caller rolls back to its last good position, so treat one as the failure it means.
        let len = buf.len();
        let submitted = InFlight::start();
        let written = self.inner.write_at(buf, pos).await;
        drop(submitted);
        let written = written.map_err(|e| self.error(e.into()))?;
        if written < len {
            return Err(self.error(std::io::Error::from_raw_os_error(libc_enospc())));
        }
        Ok(())
    }

    /// Reads up to `len` bytes at `pos` (fewer at the end of the file).
    pub async fn read_at(&self, pos: u64, len: usize) -> Result<Vec<u8>> {
        let submitted = InFlight::start();
        let read = self.inner.read_at(pos, len).await;
        drop(submitted);
        Ok(read.map_err(|e| self.error(e.into()))?.to_vec())
    }

    /// Reads exactly `len` bytes at `pos`, or fails with UnexpectedEof.
    pub async fn read_exact_at(&self, pos: u64, len: usize) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let chunk = self
                .read_at(pos + out.len() as u64, len - out.len())
                .await?;
            if chunk.is_empty() {
                return Err(self.error(std::io::ErrorKind::UnexpectedEof.into()));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    pub async fn fdatasync(&self) -> Result<()> {
        if self.faults.fails_syncs() {
            return Err(self.error(std::io::Error::from_raw_os_error(5)));
        }
        let _submitted = InFlight::start();
        self.inner
            .fdatasync()
            .await
            .map_err(|e| self.error(e.into()))
    }

    pub async fn truncate(&self, len: u64) -> Result<()> {
        self.inner
            .truncate(len)
            .await
            .map_err(|e| self.error(e.into()))
    }

    pub async fn size(&self) -> Result<u64> {
        self.inner
            .file_size()
            .await
            .map_err(|e| self.error(e.into()))
    }

    /// Closes the file now (dropping it closes it too, in the background).
    pub async fn close(self) -> Result<()> {
        let path = self.path;
        self.inner
            .close()
            .await
            .map_err(|e| with_path(e.into(), &path))
    }

    fn error(&self, e: std::io::Error) -> std::io::Error {
        with_path(e, &self.path)
    }
}

fn libc_enospc() -> i32 {
    28
}

/// Adds the path to an error's message, keeping its kind and errno.
pub fn with_path(e: std::io::Error, path: &Path) -> std::io::Error {
    let message = format!("{}: {e}", path.display());
    match e.raw_os_error() {
        Some(errno) => {
            std::io::Error::new(std::io::Error::from_raw_os_error(errno).kind(), message)
        }
        None => std::io::Error::new(e.kind(), message),
    }
}

/// Whether an error is a full disk.
pub fn is_no_space(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc_enospc()) || e.kind() == std::io::ErrorKind::StorageFull
}

/// Makes a directory's entries (creations, renames, unlinks) durable.
pub async fn sync_dir(path: &Path) -> Result<()> {
    let _place = transient_place().await;
    let dir = glommio::io::Directory::open(path)
        .await
        .map_err(|e| with_path(e.into(), path))?;
    dir.sync().await.map_err(|e| with_path(e.into(), path))?;
    dir.close().await.map_err(|e| with_path(e.into(), path))
}

/// Writes `contents` to `path` crash-safely: a temporary file, fdatasync, rename, directory sync.
pub async fn write_atomically(path: &Path, contents: Vec<u8>, faults: &Faults) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let file = File::open_transient(&tmp, true, faults).await?;
        file.truncate(0).await?;
        file.write_at(contents, 0).await?;
        file.fdatasync().await?;
    }
    std::fs::rename(&tmp, path).map_err(|e| with_path(e, path))?;
    sync_dir(path.parent().unwrap_or(Path::new("."))).await
}

/// Raises the soft descriptor limit (RLIMIT_NOFILE) to the hard one and returns it.
pub fn raise_descriptor_limit() -> Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit; raising the soft limit up to the hard one is
        // always allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    Ok(limit.rlim_cur)
}

/// Sleeps on the executor's timer.
pub async fn sleep(duration: Duration) {
    glommio::timer::sleep(duration).await;
}

/// Yields to other tasks if this one has used up its time slice (long background loops).
pub async fn yield_if_needed() {
    glommio::yield_if_needed().await;
}

pub use budget::{Budget, Grant};
pub use clock::{Clock, ManualClock, SystemClock};
pub use lock::{Lock, LockGuard};

/// A queue of tasks with a share of the core. Hot-path work (produce, fetch) runs on queues with
/// more shares than background work (retention, compaction, index rebuilds).
#[derive(Clone, Copy, Debug)]
pub struct TaskQueue {
    handle: glommio::TaskQueueHandle,
}

impl TaskQueue {
    /// A queue with `shares` (relative weight, 1..=1000) on the current executor.
    pub fn new(name: &str, shares: usize) -> TaskQueue {
        let handle = glommio::executor().create_task_queue(
            glommio::Shares::Static(shares),
            glommio::Latency::NotImportant,
            name,
        );
        TaskQueue { handle }
    }

    /// Spawns `future` on this queue; it runs to completion unless the returned handle is dropped
    /// after [`Task::cancel`].
    pub fn spawn<T: 'static>(&self, future: impl Future<Output = T> + 'static) -> Task<T> {
        let task = glommio::spawn_local_into(future, self.handle)
            .expect("task queue exists on this executor");
        Task { inner: task }
    }
}

/// Spawns `future` on the current executor's default queue.
pub fn spawn<T: 'static>(future: impl Future<Output = T> + 'static) -> Task<T> {
    Task {
        inner: glommio::spawn_local(future),
    }
}

/// Runs CPU-heavy `work` (a password's PBKDF2) on the executor's blocking thread pool, so that
/// the shard's event loop goes on serving meanwhile.
pub async fn off_core<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    glommio::executor().spawn_blocking(work).await
}

/// A spawned task; await it for its result.
pub struct Task<T> {
    inner: glommio::Task<T>,
}

impl<T> Task<T> {
    pub async fn join(self) -> T {
        self.inner.await
    }

    /// Lets the task run on without anyone awaiting it.
    pub fn detach(self) {
        self.inner.detach();
    }
}

/// How often every executor wakes with nothing to do. Twice in one day of test runs an executor
/// slept in `io_uring_enter` with its work done and no timer pending, once in a storage test and
/// once in both shards of a `serve` that had not yet listened (for minutes; the signal of an
/// attached debugger woke each, and it carried on at once): a wake-up was lost in glommio's
/// sleep. A pending timer bounds such a loss to this delay.
const WAKE_MS: u64 = 50;

/// Keeps a timer pending on the calling executor for as long as it runs (see [`WAKE_MS`]).
pub fn keep_waking() {
    glommio::spawn_local(async {
        loop {
            sleep(Duration::from_millis(WAKE_MS)).await;
        }
    })
    .detach();
}

/// Runs `future` on a fresh single-threaded executor on this thread and returns its output: for
/// command-line tools, tests and benchmarks.
pub fn block_on<T>(future: impl Future<Output = T>) -> T {
    let executor = glommio::LocalExecutorBuilder::default()
        .make()
        .expect("cannot start an io_uring executor: is io_uring allowed here?");
    executor.run(async move {
        keep_waking();
        future.await
    })
}

/// Checks that this process may create an io_uring, before any executor tries: a container
/// runtime's seccomp profile (Docker's default blocks io_uring) or `kernel.io_uring_disabled`
/// would otherwise surface as an obscure executor failure. The error says what to do.
pub fn probe_io_uring() -> std::result::Result<(), String> {
    // struct io_uring_params is 120 bytes; zeroed asks for the defaults.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup(2) reads and writes `params`, which is as large as the kernel's
    // struct; a returned descriptor is ours and closed at once.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd >= 0 {
        // SAFETY: `fd` is the ring just created and owned by nothing else.
        unsafe { libc::close(fd as i32) };
        return Ok(());
    }
    Err(io_uring_advice(std::io::Error::last_os_error()))
}

/// What to tell an operator whose io_uring_setup failed with `error`.
pub fn io_uring_advice(error: std::io::Error) -> String {
    let cause = match error.raw_os_error() {
        Some(libc::EPERM) => {
            "io_uring is blocked. In a container this is the runtime's seccomp profile (Docker's \
             default blocks io_uring): run with `--security-opt seccomp=unconfined` or a profile \
             that allows io_uring_setup, io_uring_enter and io_uring_register. On a host, check \
             `sysctl kernel.io_uring_disabled` (0 allows everyone; 1 only members of \
             kernel.io_uring_group)."
        }
        Some(libc::ENOSYS) => {
            "this kernel has no io_uring: Sluice needs Linux 5.8 or later built with \
             CONFIG_IO_URING."
        }
        Some(libc::ENOMEM) => {
            "the kernel refused the ring's memory: raise the locked-memory limit (`ulimit -l`, \
             LimitMEMLOCK= in a systemd unit)."
        }
        _ => "io_uring is not available to this process.",
    };
    format!("cannot create an io_uring (io_uring_setup: {error}): {cause}")
}

/// This thread's (shard's) file I/O on its ring: how many operations are in flight now, and the
/// depth each one found when it was submitted (itself included), for metrics.
#[derive(Clone)]
pub struct DiskDepth {
    pub in_flight: u64,
    pub depths: hdrhistogram::Histogram<u64>,
}

thread_local! {
    static DISK_DEPTH: std::cell::RefCell<DiskDepth> = std::cell::RefCell::new(DiskDepth {
        in_flight: 0,
        depths: hdrhistogram::Histogram::new_with_bounds(1, 1 << 20, 2).expect("valid bounds"),
    });
}

/// A copy of this thread's file I/O depth.
pub fn disk_depth() -> DiskDepth {
    DISK_DEPTH.with(|d| d.borrow().clone())
}

/// One file operation in flight on this thread's ring, from its submission until dropped.
struct InFlight;

impl InFlight {
    fn start() -> InFlight {
        DISK_DEPTH.with(|d| {
            let mut d = d.borrow_mut();
            d.in_flight += 1;
            let depth = d.in_flight;
            d.depths.saturating_record(depth);
        });
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        DISK_DEPTH.with(|d| d.borrow_mut().in_flight -= 1);
    }
}
