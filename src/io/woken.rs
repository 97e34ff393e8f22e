//! A future polled only when its own wake-up fired. glommio's shared channels (the shard mesh)
//! push a clone of the polling task's waker on every poll that finds the channel full or empty,
//! and drop those clones only as room or messages come, a few at a time. A task that polls such
//! a send again and again while it waits (a join over several sends, each wake-up of one
//! polling them all) piles up clones of its waker until glommio's 16-bit task reference count
//! overflows: "Waker invariant broken" at 32,768, then a use after free (glibc: "double free
//! detected in tcache", the broker aborting under load). Here the inner future gets a waker of
//! its own, not the task's, and is polled again only once that waker was woken: one clone per
//! wake-up, whatever polls the task takes.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future> Woken<F> {
    pub fn new(inner: F) -> Woken<F> {
        Woken {
            inner: Box::pin(inner),
            flag: Arc::new(Flag {
                woken: AtomicBool::new(true),
                task: AtomicWaker::new(),
            }),
        }
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
}
