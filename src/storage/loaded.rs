//! Which closed segments stay loaded, over all the logs of a shard: a loaded closed segment holds
//! one descriptor (its log file) and its indexes in memory, so their number is bounded per shard,
//! least recently used unloaded first, whatever the number of partitions. A segment unloaded
//! here loads again on its next use (`Log::ensure_loaded`).
//!
//! The descriptors are counted exactly: each closed segment's file holds one of the shard's
//! places ([`acquire_place`]) until it closes, and a read range taken from a segment keeps the
//! file open after the segment is unloaded, until the range is sent. A read that finds every
//! place held by reads in flight gets `StorageError::Busy` instead of a descriptor the process
//! does not have (a fetch answers that partition with no records, and the client asks again).
//!
//! The bound is per thread, which is per shard: the broker sets it from the shard's share of the
//! descriptor limit ([`set_capacity`]); a thread that never sets it (tools, tests) gets
//! [`DEFAULT_CAPACITY`].

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Weak;

use super::log::State;
use crate::io::{Budget, Grant};
use crate::model::Offset;

/// Loaded closed segments per shard when nothing set another bound.
pub const DEFAULT_CAPACITY: usize = 256;

type Key = (u64, Offset);

struct Loaded {
    capacity: usize,
    places: Budget,
    tick: u64,
    /// Uses in order: the smallest tick is the least recently used.
    by_tick: BTreeMap<u64, (Key, Weak<RefCell<State>>)>,
    by_key: HashMap<Key, u64>,
}

thread_local! {
    static LOADED: RefCell<Loaded> = RefCell::new(Loaded {
        capacity: DEFAULT_CAPACITY,
        places: Budget::new(DEFAULT_CAPACITY),
        tick: 0,
        by_tick: BTreeMap::new(),
        by_key: HashMap::new(),
    });
}

/// Bounds the closed segments this thread (shard) keeps loaded, and the descriptors of closed
/// segments it holds at all; at least one. Set it before any log opens.
pub fn set_capacity(capacity: usize) {
    LOADED.with(|l| {
        let mut l = l.borrow_mut();
        l.capacity = capacity.max(1);
        l.places = Budget::new(l.capacity);
    });
}

/// A place for one more closed segment's file: free, or freed by unloading the least recently
/// used segments; `None` when every place is held by a file that reads in flight keep open.
pub(super) fn acquire_place() -> Option<Grant> {
    loop {
        let places = LOADED.with(|l| l.borrow().places.clone());
        if let Some(place) = places.try_acquire(1) {
            return Some(place);
        }
        let victim = LOADED.with(|l| {
            let mut l = l.borrow_mut();
            let (_, (key, state)) = l.by_tick.pop_first()?;
            l.by_key.remove(&key);
            Some((key, state))
        });
        let (key, state) = victim?;
        if !unload(&state, key.1) {
            LOADED.with(|l| l.borrow_mut().note(key, state));
            return None;
        }
    }
}

pub fn capacity() -> usize {
    LOADED.with(|l| l.borrow().capacity)
}

/// Closed segments this thread counts as loaded (some may since have been deleted or unloaded by
/// their log; they leave when their turn comes).
pub fn tracked() -> usize {
    LOADED.with(|l| l.borrow().by_key.len())
}

/// Notes a use of closed segment `base` of log `log` (loaded now), and unloads the least recently
/// used ones over the bound. Call with no borrow of any log's state held.
pub(super) fn touch(log: u64, base: Offset, state: &Weak<RefCell<State>>) {
    let victims = LOADED.with(|l| {
        let mut l = l.borrow_mut();
        l.note((log, base), state.clone());
        let mut victims = Vec::new();
        while l.by_key.len() > l.capacity {
            let Some((_, (key, state))) = l.by_tick.pop_first() else {
                break;
            };
            l.by_key.remove(&key);
            victims.push((key, state));
        }
        victims
    });
    for (key, state) in victims {
        if !unload(&state, key.1) {
            // Still loaded: keep counting it, as the most recent (the next one over goes first).
            LOADED.with(|l| l.borrow_mut().note(key, state));
        }
    }
}

impl Loaded {
    fn note(&mut self, key: Key, state: Weak<RefCell<State>>) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(old) = self.by_key.insert(key, tick) {
            self.by_tick.remove(&old);
        }
        self.by_tick.insert(tick, (key, state));
    }
}

/// Forgets a log's segment (deleted, or become the active one again after a truncation).
pub(super) fn forget(log: u64, base: Offset) {
    LOADED.with(|l| {
        let mut l = l.borrow_mut();
        if let Some(tick) = l.by_key.remove(&(log, base)) {
            l.by_tick.remove(&tick);
        }
    });
}

/// Unloads `base` unless it is the active segment; false when it could not (its state is borrowed
/// right now, which callers of `touch` rule out for their own log).
fn unload(state: &Weak<RefCell<State>>, base: Offset) -> bool {
    let Some(state) = state.upgrade() else {
        return true; // the log is gone
    };
    let Ok(mut state) = state.try_borrow_mut() else {
        return false;
    };
    if state.active_base() != base {
        if let Some(slot) = state.segments.get_mut(&base) {
            *slot = None;
        }
    }
    true
}
