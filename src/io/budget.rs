//! A byte budget for one core's tasks: a task takes bytes before it allocates them (a request
//! frame) and gives them back when done. Grants go in FIFO order, so a large request is not
//! starved by a stream of small ones. A single acquisition larger than the whole budget takes the
//! whole budget (it waits until everything else is returned), so nothing waits forever.
//! Plain std code: no runtime dependency.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

#[derive(Debug)]
struct Waiter {
    bytes: usize,
    granted: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

#[derive(Debug)]
struct Inner {
    total: usize,
    available: Cell<usize>,
    waiters: RefCell<VecDeque<Rc<Waiter>>>,
}

impl Inner {
    fn release(&self, bytes: usize) {
        self.available.set(self.available.get() + bytes);
        assert!(self.available.get() <= self.total, "budget over-returned");
        let mut waiters = self.waiters.borrow_mut();
        while let Some(next) = waiters.front() {
            if next.bytes > self.available.get() {
                break;
            }
            let next = waiters.pop_front().expect("front exists");
            self.available.set(self.available.get() - next.bytes);
            next.granted.set(true);
            let waker = next.waker.borrow_mut().take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct Budget {
    inner: Rc<Inner>,
}

/// Bytes taken from a budget; dropping it gives them back.
#[derive(Debug)]
pub struct Grant {
    inner: Rc<Inner>,
    bytes: usize,
}

impl Drop for Grant {
    fn drop(&mut self) {
        self.inner.release(self.bytes);
    }
}

/// Dropping a waiting acquisition (its task was cancelled) returns a grant it got meanwhile.
struct Pending {
    inner: Rc<Inner>,
    waiter: Rc<Waiter>,
    done: bool,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if self.waiter.granted.get() {
            self.inner.release(self.waiter.bytes);
        } else {
            self.inner
                .waiters
                .borrow_mut()
                .retain(|w| !Rc::ptr_eq(w, &self.waiter));
        }
    }
}

impl Budget {
    pub fn new(total_bytes: usize) -> Budget {
        assert!(total_bytes > 0, "an empty budget grants nothing");
        Budget {
            inner: Rc::new(Inner {
                total: total_bytes,
                available: Cell::new(total_bytes),
                waiters: RefCell::new(VecDeque::new()),
            }),
        }
    }

    pub fn available(&self) -> usize {
        self.inner.available.get()
    }

    /// Takes `bytes` now if they are free and nobody waits for them first.
    pub fn try_acquire(&self, bytes: usize) -> Option<Grant> {
        let bytes = bytes.min(self.inner.total);
        let inner = &self.inner;
        if !inner.waiters.borrow().is_empty() || inner.available.get() < bytes {
            return None;
        }
        inner.available.set(inner.available.get() - bytes);
        Some(Grant {
            inner: inner.clone(),
            bytes,
        })
    }

    /// Waits until `bytes` (at most the whole budget) are free, in arrival order, and takes them.
    pub async fn acquire(&self, bytes: usize) -> Grant {
        let bytes = bytes.min(self.inner.total);
        let inner = &self.inner;
        if inner.waiters.borrow().is_empty() && inner.available.get() >= bytes {
            inner.available.set(inner.available.get() - bytes);
            return Grant {
                inner: inner.clone(),
                bytes,
            };
        }
        let waiter = Rc::new(Waiter {
            bytes,
            granted: Cell::new(false),
            waker: RefCell::new(None),
        });
        inner.waiters.borrow_mut().push_back(waiter.clone());
        let mut pending = Pending {
            inner: inner.clone(),
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
        Grant {
            inner: inner.clone(),
            bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_in_order_and_returns_on_drop() {
        crate::io::block_on(async {
            let budget = Budget::new(100);
            let a = budget.acquire(60).await;
            assert_eq!(budget.available(), 40);
            let order = Rc::new(RefCell::new(Vec::new()));
            let big = {
                let (budget, order) = (budget.clone(), order.clone());
                crate::io::TaskQueue::new("t", 100).spawn(async move {
                    let g = budget.acquire(1_000).await; // more than the total: takes it all
                    order.borrow_mut().push("big");
                    drop(g);
                })
            };
            let small = {
                let (budget, order) = (budget.clone(), order.clone());
                crate::io::TaskQueue::new("u", 100).spawn(async move {
                    let _g = budget.acquire(10).await;
                    order.borrow_mut().push("small");
                })
            };
            crate::io::sleep(std::time::Duration::from_millis(5)).await;
            assert!(
                order.borrow().is_empty(),
                "both wait: FIFO, and big needs everything"
            );
            drop(a);
            big.join().await;
            small.join().await;
            assert_eq!(*order.borrow(), vec!["big", "small"]);
            assert_eq!(budget.available(), 100);
        });
    }

    #[test]
    fn a_dropped_wait_leaves_the_queue_and_returns_its_grant() {
        crate::io::block_on(async {
            let budget = Budget::new(10);
            let held = budget.acquire(10).await;
            let mut waiting = Box::pin(budget.acquire(5));
            assert!(futures::poll!(waiting.as_mut()).is_pending());
            drop(waiting); // cancelled while queued
            drop(held);
            assert_eq!(budget.available(), 10);
            // Granted while nobody polls it, then dropped: the grant comes back.
            let held = budget.acquire(10).await;
            let mut waiting = Box::pin(budget.acquire(5));
            assert!(futures::poll!(waiting.as_mut()).is_pending());
            drop(held);
            assert_eq!(budget.available(), 5, "granted to the waiter");
            drop(waiting);
            assert_eq!(budget.available(), 10);
        });
    }
}
