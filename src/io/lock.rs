//! A fair async lock for one core's tasks: ownership passes straight to the longest waiter, so a
//! task that releases and at once asks again queues behind the others instead of barging ahead
//! (glommio's semaphore lets the releaser re-acquire first). Fairness is what makes group commit
//! work: while one append writes, the others queue up, and the next lock holder writes them all.
//! Plain std code: no runtime dependency.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

#[derive(Debug, Default)]
struct Waiter {
    granted: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

#[derive(Debug, Default)]
pub struct Lock {
    locked: Cell<bool>,
    waiters: RefCell<VecDeque<Rc<Waiter>>>,
}

/// Holds the lock; dropping it hands the lock to the next waiter.
pub struct LockGuard<'a> {
    lock: &'a Lock,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.lock.release();
    }
}

/// Dropping a waiting acquisition (its task was cancelled) passes a grant on, if it got one.
struct Pending<'a> {
    lock: &'a Lock,
    waiter: Rc<Waiter>,
    done: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if self.waiter.granted.get() {
            self.lock.release();
        } else {
            self.lock
                .waiters
                .borrow_mut()
                .retain(|w| !Rc::ptr_eq(w, &self.waiter));
        }
    }
}

impl Lock {
    pub async fn lock(&self) -> LockGuard<'_> {
        if !self.locked.get() && self.waiters.borrow().is_empty() {
            self.locked.set(true);
            return LockGuard { lock: self };
        }
        let waiter = Rc::new(Waiter::default());
        self.waiters.borrow_mut().push_back(waiter.clone());
        let mut pending = Pending {
            lock: self,
            waiter,
            done: false,
        };
        poll_fn(|cx| {
            if pending.waiter.granted.get() {
                return Poll::Ready(());
            }
            *pending.waiter.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        pending.done = true;
        LockGuard { lock: self }
    }

    fn release(&self) {
        assert!(self.locked.get(), "releasing a lock that is not held");
        let next = self.waiters.borrow_mut().pop_front();
        match next {
            Some(waiter) => {
                // The lock stays taken: ownership moves to the waiter.
                waiter.granted.set(true);
                if let Some(waker) = waiter.waker.borrow_mut().take() {
                    waker.wake();
                }
            }
            None => self.locked.set(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_handed_over_in_arrival_order() {
        crate::io::block_on(async {
            let lock = Rc::new(Lock::default());
            let order = Rc::new(RefCell::new(Vec::new()));
            let queue = crate::io::TaskQueue::new("lockers", 100);
            let first = lock.lock().await;
            let tasks: Vec<_> = (0..3)
                .map(|i| {
                    let (lock, order) = (lock.clone(), order.clone());
                    queue.spawn(async move {
                        for round in 0..2 {
                            let _guard = lock.lock().await;
                            order.borrow_mut().push((round, i));
                            crate::io::sleep(std::time::Duration::from_millis(1)).await;
                        }
                    })
                })
                .collect();
            crate::io::sleep(std::time::Duration::from_millis(5)).await;
            drop(first);
            for task in tasks {
                task.join().await;
            }
            // Each task asks again right after releasing, yet waits its turn behind the others.
            assert_eq!(
                *order.borrow(),
                [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
            );
            assert!(!lock.locked.get());
        });
    }

    #[test]
    fn a_cancelled_waiter_passes_its_grant_on() {
        crate::io::block_on(async {
            let lock = Lock::default();
            let held = lock.lock().await;
            {
                let waiting = std::pin::pin!(lock.lock());
                // Poll once so it queues, then drop it while it waits.
                let _ = futures_poll_once(waiting).await;
            }
            drop(held);
            assert!(!lock.locked.get(), "the dropped waiter left the queue");
            let _again = lock.lock().await;
        });
    }

    async fn futures_poll_once<F: std::future::Future>(
        mut future: std::pin::Pin<&mut F>,
    ) -> Option<F::Output> {
        poll_fn(|cx| {
            Poll::Ready(match future.as_mut().poll(cx) {
                Poll::Ready(v) => Some(v),
                Poll::Pending => None,
            })
        })
        .await
    }
}
