//! Who may connect: `max.connections` in all and `max.connections.per.ip`, counted over every
//! shard. The counts are shared across cores (an atomic and one small map behind a mutex):
//! they are touched once when a connection opens and once when it closes, never on a request,
//! so sharing them costs nothing on the data path and keeps the limits exact however the
//! kernel spreads connections over the shards.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub struct Admission {
    total_max: usize,
    per_ip_max: usize,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("max.connections ({limit}) reached")]
    Total { limit: usize },
    #[error("max.connections.per.ip ({limit}) reached for {ip}")]
    PerIp { ip: IpAddr, limit: usize },
}

/// One admitted connection; dropping it gives its place back.
#[derive(Debug)]
pub struct Admitted {
    admission: Arc<Admission>,
    ip: Option<IpAddr>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.admission.total.fetch_sub(1, Ordering::SeqCst);
        if let Some(ip) = self.ip {
            let mut per_ip = self.admission.lock();
            if let Some(count) = per_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
    }
}

impl Admission {
    pub fn new(total_max: usize, per_ip_max: usize) -> Arc<Admission> {
        Arc::new(Admission {
            total_max,
            per_ip_max,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // A panic while holding this lock leaves only counts behind: keep using them.
        self.per_ip.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connections admitted and open now, over every shard.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Whether another connection fits under `max.connections` now (the accept loop waits
    /// while it does not, leaving new connections in the kernel's listen queue, as Kafka does).
    pub fn has_room(&self) -> bool {
        self.total.load(Ordering::SeqCst) < self.total_max
    }

    pub fn connections(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    /// Takes a place for a connection from `ip` (`None`: a peer address the socket could not
    /// tell, counted in the total only).
    pub fn admit(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<Admitted, Refused> {
        if self.total.fetch_add(1, Ordering::SeqCst) >= self.total_max {
            self.total.fetch_sub(1, Ordering::SeqCst);
            return Err(Refused::Total {
                limit: self.total_max,
            });
        }
        if let Some(ip) = ip {
            let mut per_ip = self.lock();
            let count = per_ip.entry(ip).or_insert(0);
            if *count >= self.per_ip_max {
                if *count == 0 {
                    per_ip.remove(&ip);
                }
                drop(per_ip);
                self.total.fetch_sub(1, Ordering::SeqCst);
                return Err(Refused::PerIp {
                    ip,
                    limit: self.per_ip_max,
                });
            }
            *count += 1;
        }
        Ok(Admitted {
            admission: self.clone(),
            ip,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn limits_count_and_give_back() {
        let admission = Admission::new(3, 2);
        let a = admission.admit(ip(1)).unwrap();
        let b = admission.admit(ip(1)).unwrap();
        assert_eq!(
            admission.admit(ip(1)).unwrap_err(),
            Refused::PerIp {
                ip: ip(1).unwrap(),
                limit: 2
            }
        );
        let c = admission.admit(ip(2)).unwrap();
        assert!(!admission.has_room());
        assert_eq!(
            admission.admit(ip(3)).unwrap_err(),
            Refused::Total { limit: 3 }
        );
        assert_eq!(admission.connections(), 3);
        drop(a);
        assert!(admission.has_room());
        let _d = admission.admit(ip(1)).unwrap();
        drop((b, c));
        assert_eq!(admission.connections(), 1);
        assert_eq!(
            admission.lock().len(),
            1,
            "addresses with no connection are forgotten"
        );
    }

    #[test]
    fn a_zero_per_ip_limit_refuses_everyone_and_leaks_nothing() {
        let admission = Admission::new(10, 0);
        assert!(admission.admit(ip(1)).is_err());
        assert_eq!(admission.connections(), 0);
        assert!(admission.lock().is_empty());
    }
}
