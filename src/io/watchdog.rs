//! A watchdog for executors asleep past their timers. Each executor's [`super::keep_waking`]
//! task beats every [`super::WAKE_MS`]; a thread of its own checks the beats and, when one has
//! not moved for [`STALL_MS`], sends that executor's thread a signal whose handler does nothing.
//! The signal ends the `io_uring_enter` the executor sleeps in (EINTR, which glommio takes as
//! "woken"), and the executor runs its expired timers.
//!
//! Why: a few times in many test runs an executor slept in `io_uring_enter` with no timeout
//! although a timer was due, for minutes, until a debugger's signal woke it, after which it
//! carried on at once. glommio sleeps on its main ring with a poll on its latency ring's file,
//! where the timers complete; a completion that does not wake that poll is lost. The cause is in
//! glommio or the kernel; this bounds its cost to [`STALL_MS`] and logs each occurrence.
//!
//! The signal is SIGURG (ignored by default, unused by the broker), installed without
//! SA_RESTART so that the sleep returns. An executor busy for longer than [`STALL_MS`] without
//! yielding is signalled too, which costs it nothing but is logged: it is a reactor stall.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// How long an executor may go without a beat before it is signalled.
pub const STALL_MS: u64 = 1_000;

/// How often the watchdog looks.
const CHECK_EVERY: Duration = Duration::from_millis(100);

const SIGNAL: libc::c_int = libc::SIGURG;

/// One watched executor thread.
pub(super) struct Beat {
    thread: libc::pthread_t,
    name: String,
    count: AtomicU64,
}

/// The watched threads. A thread leaves the list (under this lock) before it exits, so the
/// watchdog never signals a thread that is gone.
static WATCHED: Mutex<Vec<Arc<Beat>>> = Mutex::new(Vec::new());

/// This thread's registration; dropped (and so removed) by [`unwatch`] or at thread exit.
struct Registration(Arc<Beat>);

impl Drop for Registration {
    fn drop(&mut self) {
        let mut watched = WATCHED.lock().unwrap_or_else(|e| e.into_inner());
        watched.retain(|beat| !Arc::ptr_eq(beat, &self.0));
    }
}

thread_local! {
    static MINE: RefCell<Option<Registration>> = const { RefCell::new(None) };
}

/// Watches the calling thread from now on (once per thread) and returns its beat counter.
pub(super) fn watch() -> Arc<Beat> {
    start_once();
    MINE.with(|mine| {
        let mut mine = mine.borrow_mut();
        if let Some(Registration(beat)) = mine.as_ref() {
            return beat.clone();
        }
        let beat = Arc::new(Beat {
            // SAFETY: pthread_self has no preconditions.
            thread: unsafe { libc::pthread_self() },
            name: std::thread::current()
                .name()
                .unwrap_or("unnamed")
                .to_string(),
            count: AtomicU64::new(0),
        });
        WATCHED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(beat.clone());
        *mine = Some(Registration(beat.clone()));
        beat
    })
}

/// Stops watching the calling thread (its executor has finished).
pub(super) fn unwatch() {
    MINE.with(|mine| mine.borrow_mut().take());
}

impl Beat {
    pub(super) fn beat(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

extern "C" fn wake_only(_: libc::c_int) {}

fn start_once() {
    static START: Once = Once::new();
    START.call_once(|| {
        // SAFETY: the handler is an empty extern "C" function (async-signal-safe); the struct
        // is zeroed plain data with an empty mask; no SA_RESTART, so that a blocked
        // io_uring_enter returns EINTR.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = wake_only as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = 0;
            libc::sigaction(SIGNAL, &action, std::ptr::null_mut());
        }
        let spawned = std::thread::Builder::new()
            .name("sluice-watchdog".into())
            .spawn(watch_forever);
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the executor watchdog");
        }
    });
}

fn watch_forever() {
    // Per watched thread: the count last seen and since when it has not moved.
    let mut seen: Vec<(Arc<Beat>, u64, Instant)> = Vec::new();
    loop {
        std::thread::sleep(CHECK_EVERY);
        let watched = WATCHED.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|(beat, _, _)| watched.iter().any(|w| Arc::ptr_eq(w, beat)));
        for beat in watched.iter() {
            let count = beat.count.load(Ordering::Relaxed);
            let now = Instant::now();
            match seen.iter_mut().find(|(b, _, _)| Arc::ptr_eq(b, beat)) {
                None => seen.push((beat.clone(), count, now)),
                Some(entry) if entry.1 != count => (entry.1, entry.2) = (count, now),
                Some(entry) => {
                    let still = now.duration_since(entry.2);
                    if still >= Duration::from_millis(STALL_MS) {
                        tracing::warn!(
                            thread = %beat.name,
                            still_ms = still.as_millis() as u64,
                            "an executor has not run its timers (a reactor stall, or a lost \
                             wake-up in its sleep); signalling it"
                        );
                        // SAFETY: the thread is in WATCHED, which we hold locked, so it has
                        // not exited (it leaves the list before it does); the signal's handler
                        // is installed and does nothing.
                        unsafe { libc::pthread_kill(beat.thread, SIGNAL) };
                        entry.2 = now;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A watched thread that stops beating is interrupted: here one blocked reading a pipe
    /// nobody writes gets EINTR, as an executor asleep in io_uring_enter does.
    #[test]
    fn a_thread_that_stops_beating_is_woken() {
        let blocked = std::thread::spawn(|| {
            let _beat = watch();
            let mut fds = [0; 2];
            // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            let started = Instant::now();
            let mut byte = 0u8;
            // SAFETY: reads at most one byte into `byte` from the pipe just made.
            let read = unsafe { libc::read(fds[0], (&mut byte as *mut u8).cast(), 1) };
            let error = std::io::Error::last_os_error();
            unwatch();
            // SAFETY: both descriptors are ours and used no more.
            unsafe {
                libc::close(fds[0]);
                libc::close(fds[1]);
            }
            (read, error.raw_os_error(), started.elapsed())
        });
        let (read, errno, waited) = blocked.join().unwrap();
        assert_eq!((read, errno), (-1, Some(libc::EINTR)));
        assert!(waited >= Duration::from_millis(STALL_MS / 2), "{waited:?}");
    }
}
