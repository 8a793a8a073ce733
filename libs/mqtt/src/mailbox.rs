//! Messages kept for later: the client hands every incoming message to one handler, whatever
//! call is running, so a library that sends a request and waits for its answer (a shadow's
//! `get`, a job's `start-next`) needs a place where the handler leaves messages and from which
//! the waiting code takes the one it wants. No heap: `N` slots of `B` bytes (topic and payload
//! together); a message that does not fit, or arrives when every slot is taken, is dropped and
//! counted.

use crate::Message;
use core::cell::RefCell;

/// Up to `N` messages of up to `B` bytes (topic and payload), oldest taken first.
pub struct Mailbox<const N: usize, const B: usize> {
    inner: RefCell<Slots<N, B>>,
}

struct Slots<const N: usize, const B: usize> {
    slots: [Slot<B>; N],
    /// The arrival number of the next message (orders the slots).
    next: u32,
    dropped: u32,
}

struct Slot<const B: usize> {
    /// Arrival number, or `None` when free.
    seq: Option<u32>,
    topic_len: usize,
    len: usize,
    bytes: [u8; B],
}

impl<const N: usize, const B: usize> Default for Mailbox<N, B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize, const B: usize> Mailbox<N, B> {
    pub const fn new() -> Self {
        Mailbox {
            inner: RefCell::new(Slots {
                slots: [const {
                    Slot {
                        seq: None,
                        topic_len: 0,
                        len: 0,
                        bytes: [0; B],
                    }
                }; N],
                next: 0,
                dropped: 0,
            }),
        }
    }

    /// Keeps a copy of `m`; false (and counted) when it does not fit or no slot is free.
    pub fn offer(&self, m: &Message<'_>) -> bool {
        let mut s = self.inner.borrow_mut();
        let len = m.topic.len() + m.payload.len();
        let seq = s.next;
        let free = s.slots.iter_mut().find(|slot| slot.seq.is_none());
        match free {
            Some(slot) if len <= B => {
                slot.bytes[..m.topic.len()].copy_from_slice(m.topic.as_bytes());
                slot.bytes[m.topic.len()..len].copy_from_slice(m.payload);
                slot.topic_len = m.topic.len();
                slot.len = len;
                slot.seq = Some(seq);
                s.next = seq.wrapping_add(1);
                true
            }
            _ => {
                s.dropped += 1;
                false
            }
        }
    }

    /// Takes the oldest message for which `f` (given its topic and payload) returns
    /// something, and returns that.
    pub fn take<R>(&self, mut f: impl FnMut(&str, &[u8]) -> Option<R>) -> Option<R> {
        let mut s = self.inner.borrow_mut();
        let mut order: [(u32, usize); N] = [(u32::MAX, usize::MAX); N];
        for (i, slot) in s.slots.iter().enumerate() {
            if let Some(seq) = slot.seq {
                order[i] = (seq.wrapping_sub(s.next), i);
            }
        }
        order.sort_unstable();
        for &(_, i) in order.iter().take_while(|(_, i)| *i != usize::MAX) {
            let slot = &mut s.slots[i];
            let (topic, payload) = slot.bytes[..slot.len].split_at(slot.topic_len);
            // A topic came in as UTF-8 (the client checked it) and is stored whole.
            let topic = core::str::from_utf8(topic).unwrap_or("");
            if let Some(r) = f(topic, payload) {
                slot.seq = None;
                return Some(r);
            }
        }
        None
    }

    /// Messages held now.
    pub fn len(&self) -> usize {
        self.inner
            .borrow()
            .slots
            .iter()
            .filter(|s| s.seq.is_some())
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every message held.
    pub fn clear(&self) {
        for s in self.inner.borrow_mut().slots.iter_mut() {
            s.seq = None;
        }
    }

    /// Messages dropped so far (no free slot, or larger than `B`).
    pub fn dropped(&self) -> u32 {
        self.inner.borrow().dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QoS;
    use std::string::ToString;
    use std::vec::Vec;

    fn msg<'a>(topic: &'a str, payload: &'a [u8]) -> Message<'a> {
        Message {
            topic,
            payload,
            qos: QoS::AtMostOnce,
            retain: false,
            dup: false,
            id: None,
        }
    }

    #[test]
    fn messages_are_taken_oldest_first_by_what_the_taker_wants() {
        let m: Mailbox<3, 32> = Mailbox::new();
        assert!(m.offer(&msg("a/1", b"one")));
        assert!(m.offer(&msg("b/1", b"two")));
        assert!(m.offer(&msg("a/2", b"three")));
        assert!(!m.offer(&msg("a/3", b"four")), "full");
        assert!(!m.offer(&msg("x", &[0; 40])), "too big");
        assert_eq!(m.dropped(), 2);
        let first_a: Option<Vec<u8>> = m.take(|t, p| t.starts_with("a/").then(|| p.to_vec()));
        assert_eq!(first_a.as_deref(), Some(&b"one"[..]));
        assert!(m.offer(&msg("a/4", b"five")), "its slot is free again");
        let next_a = m.take(|t, _| t.starts_with("a/").then(|| t.to_string()));
        assert_eq!(next_a.as_deref(), Some("a/2"), "a/2 came before a/4");
        assert_eq!(m.len(), 2);
        assert_eq!(m.take(|t, _| (t == "zz").then_some(())), None);
        m.clear();
        assert!(m.is_empty());
    }
}
