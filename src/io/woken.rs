//! A future polled only when its own wake-up fired. glommio's shared channels (the shard mesh)
//! push a clone of the polling task's waker on every poll that finds the channel full or empty,
//! and drop those clones only as room or messages come, a few at a time. A task that polls such
//! a send again and again while it waits (a join over several sends, each wake-up of one
//! polling them all) piles up clones of its waker until glommio's 16-bit task reference count
//! overflows: "Waker invariant broken" at 32,768, then a use after free (glibc: "double free
//! detected in tcache", the broker aborting under load). Here the inner future gets a waker of
//! its own, not the task's, and is polled again only once that waker was woken: one clone per
//! wake-up, whatever polls the task takes.
//!
//! It is also how a task waits for another thread (a one-shot answer from another shard): the
//! task's own waker never leaves its thread. glommio counts a task's references in the task, and
//! a waker woken or dropped on another thread can take the count to zero there for a moment
//! (it drops its reference, then takes one again to send the task a last wake-up): a task that
//! completes on its own thread in that moment is freed, then freed again by that wake-up (the
//! broker aborting with "double free detected in tcache"; core dumps showed the second free in
//! glommio's `process_foreign_wakes`, of a request task that had waited on another shard). Here
//! another thread only ever holds the wrapper's own waker (an `Arc`): woken there, it queues
//! itself for its home thread's pump ([`start_pump`]), a task that lives as long as the executor
//! (a task that never completes cannot be freed in that moment), which wakes the waiting task
//! on its own thread. The task's waker is taken back on its thread when the wrapper is dropped.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;

/// `inner`, polled only on its own wake-ups (see the module's note).
pub struct Woken<F> {
    inner: Pin<Box<F>>,
    flag: Arc<Flag>,
}

struct Flag {
    woken: AtomicBool,
    /// The task to wake: the last one that polled (one clone, replaced only by another task's).
    task: AtomicWaker,
    /// The pump of the thread the task runs on (none outside a shard: woken in place).
    home: Option<Arc<Pump>>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        match &self.home {
            Some(home) if !home.is_here() => {
                home.queue().push(self.clone());
                home.task.wake();
            }
            _ => self.task.wake(),
        }
    }
}

/// Wake-ups from other threads for the tasks of one thread, delivered there by a task that lives
/// as long as the thread's executor.
struct Pump {
    queue: Mutex<Vec<Arc<Flag>>>,
    task: AtomicWaker,
}

thread_local! {
    static PUMP: RefCell<Option<Arc<Pump>>> = const { RefCell::new(None) };
}

impl Pump {
    /// The queued flags (a panic elsewhere while holding the lock leaves them usable).
    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Flag>>> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn is_here(self: &Arc<Self>) -> bool {
        PUMP.with(|here| here.borrow().as_ref().is_some_and(|p| Arc::ptr_eq(p, self)))
    }
}

/// Starts the calling executor's pump for wake-ups from other threads (once per shard, before
/// anything waits on another shard).
pub fn start_pump() {
    let pump = Arc::new(Pump {
        queue: Mutex::new(Vec::new()),
        task: AtomicWaker::new(),
    });
    PUMP.with(|here| *here.borrow_mut() = Some(pump.clone()));
    glommio::spawn_local(std::future::poll_fn(move |cx| {
        // Registered before the queue is taken: a flag queued after is followed by a wake-up.
        pump.task.register(cx.waker());
        let flags = std::mem::take(&mut *pump.queue());
        for flag in flags {
            flag.task.wake();
        }
        Poll::<()>::Pending
    }))
    .detach();
}

/// A one-shot channel whose answer comes from another thread (another shard): its receiver waits
/// through [`Woken`]. Every wait on another shard takes one of these.
pub type Answered<T> = Woken<futures::channel::oneshot::Receiver<T>>;

pub fn answer_channel<T>() -> (futures::channel::oneshot::Sender<T>, Answered<T>) {
    let (answer, answered) = futures::channel::oneshot::channel();
    (answer, Woken::new(answered))
}

impl<F: Future> Woken<F> {
    pub fn new(inner: F) -> Woken<F> {
        Woken {
            inner: Box::pin(inner),
            flag: Arc::new(Flag {
                woken: AtomicBool::new(true),
                task: AtomicWaker::new(),
                home: PUMP.with(|here| here.borrow().clone()),
            }),
        }
    }
}

impl<F> Drop for Woken<F> {
    /// The task's waker goes with the wrapper, on the task's thread: the wrapper's own waker may
    /// outlive it on another thread, and must not drop the task's there.
    fn drop(&mut self) {
        drop(self.flag.task.take());
    }
}

impl<F: Future> Future for Woken<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        this.flag.task.register(cx.waker());
        if !this.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = Waker::from(this.flag.clone());
        this.inner.as_mut().poll(&mut Context::from_waker(&waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A send that waits on a full channel, polled 40,000 times by its task: glommio's own
    /// future overflows the task's reference count (the panic this wrapper is for); wrapped, it
    /// waits, and is delivered once the receiver takes the first message.
    #[test]
    fn a_send_polled_again_and_again_holds_one_clone_of_the_task_waker() {
        let (tx, rx) = glommio::channels::shared_channel::new_bounded::<u32>(1);
        let receiver = glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let rx = rx.connect().await;
                glommio::timer::sleep(std::time::Duration::from_millis(500)).await;
                let mut got = Vec::new();
                while let Some(m) = rx.recv().await {
                    got.push(m);
                }
                got
            })
            .unwrap();
        let sender = glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let tx = tx.connect().await;
                tx.send(1).await.unwrap();
                let mut send = std::pin::pin!(Woken::new(tx.send(2)));
                let mut polls = 0;
                let sent = std::future::poll_fn(|cx| {
                    polls += 1;
                    match send.as_mut().poll(cx) {
                        Poll::Ready(r) => Poll::Ready(r),
                        Poll::Pending if polls < 40_000 => {
                            // Woken by something else at once: polled again.
                            cx.waker().wake_by_ref();
                            Poll::Pending
                        }
                        Poll::Pending => Poll::Pending,
                    }
                })
                .await;
                assert!(sent.is_ok());
                polls
            })
            .unwrap();
        let polls = sender.join().unwrap();
        assert!(
            polls >= 40_000,
            "the send waited through every poll: {polls}"
        );
        assert_eq!(receiver.join().unwrap(), vec![1, 2]);
    }

    /// A wait on another thread whose channel keeps the last waker it was given after the wait
    /// is over (futures' one-shot does, when the two sides contend for its lock): once the
    /// wrapper is gone, that waker no longer holds the task's, so the other thread, dropping
    /// the channel, never drops the task's waker.
    #[test]
    fn a_finished_wait_leaves_nothing_of_the_task_with_the_other_thread() {
        struct Task;
        impl Wake for Task {
            fn wake(self: Arc<Self>) {}
        }
        let task = Arc::new(Task);
        let waker = Waker::from(task.clone());
        // The other thread's side of a channel: it keeps the waker of the last poll.
        let kept: Arc<std::sync::Mutex<Option<Waker>>> = Default::default();
        let channel = kept.clone();
        let wait = std::future::poll_fn(move |cx| {
            *channel.lock().unwrap() = Some(cx.waker().clone());
            Poll::<()>::Pending
        });
        let mut wait = Box::pin(Woken::new(wait));
        assert!(wait
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        drop(waker);
        assert_eq!(
            Arc::strong_count(&task),
            2,
            "the wrapper holds the task's waker"
        );
        drop(wait);
        assert!(
            kept.lock().unwrap().is_some(),
            "the channel still has a waker"
        );
        assert_eq!(
            Arc::strong_count(&task),
            1,
            "and it is the wrapper's own, not the task's"
        );
    }

    /// Answers from another thread reach tasks waiting on them, through their thread's pump.
    #[test]
    fn answers_from_another_thread_wake_the_waiting_tasks_through_their_pump() {
        type Answer = futures::channel::oneshot::Sender<u32>;
        let (to_answer, asked) = std::sync::mpsc::channel::<Answer>();
        let answering = std::thread::spawn(move || {
            for (n, answer) in asked.iter().enumerate() {
                if n % 2 == 0 {
                    std::thread::yield_now();
                }
                let _ = answer.send(n as u32);
            }
        });
        let waiting = glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                start_pump();
                let mut sum = 0;
                for _ in 0..2_000 {
                    let (answer, answered) = futures::channel::oneshot::channel();
                    let wait = Woken::new(answered);
                    assert!(wait.flag.home.is_some(), "a pump on this thread");
                    to_answer.send(answer).unwrap();
                    sum += wait.await.unwrap();
                }
                sum
            })
            .unwrap();
        assert_eq!(waiting.join().unwrap(), (0..2_000).sum::<u32>());
        answering.join().unwrap();
    }
}
