//! Stream buffers (bytes, with a trigger level) and message buffers (whole messages, each
//! kept with its length).
//!
//! Both are meant for one writer and one reader (a task and an interrupt handler, typically);
//! several tasks may block on one end, and are then served highest priority first. A reader
//! blocked on a stream buffer is woken when at least *trigger level* bytes are there; when its
//! timeout ends first it gets whatever has arrived. Writes never block from interrupts.

use crate::rt::{self, switch_if};
use crate::sched::{Kernel, WaitList};
use crate::time::{block_on, Step, Timeout};
use core::cell::UnsafeCell;

/// Ring state, type-erased over the storage size.
struct Ring {
    cap: usize,
    head: usize,
    len: usize,
    trigger: usize,
    readers: WaitList,
    writers: WaitList,
}

impl Ring {
    const fn new(cap: usize) -> Self {
        Ring {
            cap,
            head: 0,
            len: 0,
            trigger: 1,
            readers: WaitList::new(),
            writers: WaitList::new(),
        }
    }

    fn space(&self) -> usize {
        self.cap - self.len
    }

    fn write(&mut self, buf: &mut [u8], data: &[u8]) {
        debug_assert!(data.len() <= self.space());
        let tail = (self.head + self.len) % self.cap;
        let first = data.len().min(self.cap - tail);
        buf[tail..tail + first].copy_from_slice(&data[..first]);
        buf[..data.len() - first].copy_from_slice(&data[first..]);
        self.len += data.len();
    }

    /// Copies `out.len()` bytes from offset `skip` of the content, without consuming.
    fn peek(&self, buf: &[u8], skip: usize, out: &mut [u8]) {
        debug_assert!(skip + out.len() <= self.len);
        let start = (self.head + skip) % self.cap;
        let first = out.len().min(self.cap - start);
        out[..first].copy_from_slice(&buf[start..start + first]);
        let rest = out.len() - first;
        out[first..].copy_from_slice(&buf[..rest]);
    }

    fn consume(&mut self, n: usize) {
        self.head = (self.head + n) % self.cap;
        self.len -= n;
    }

    fn wake_all(k: &mut Kernel, w: &mut WaitList) {
        while let Some((_, due)) = k.wake_first(w) {
            switch_if(k, due);
        }
    }
}

/// A byte stream of capacity `N`.
pub struct StreamBuffer<const N: usize> {
    ring: UnsafeCell<Ring>,
    buf: UnsafeCell<[u8; N]>,
}

// SAFETY: all state is touched only inside kernel critical sections.
unsafe impl<const N: usize> Sync for StreamBuffer<N> {}
// SAFETY: as above.
unsafe impl<const N: usize> Send for StreamBuffer<N> {}

impl<const N: usize> Default for StreamBuffer<N> {
    fn default() -> Self {
        Self::new(1)
    }
}

/// Runs `f` on the ring and its storage inside a critical section (`block_on` attempts are
/// already inside one).
macro_rules! parts {
    ($self:ident) => {
        // SAFETY: called inside a kernel critical section; ring and buffer are distinct.
        unsafe { (&mut *$self.ring.get(), &mut *$self.buf.get()) }
    };
}

impl<const N: usize> StreamBuffer<N> {
    /// An empty stream buffer; a blocked reader wakes once `trigger` bytes are there.
    pub const fn new(trigger: usize) -> Self {
        assert!(
            N > 0 && trigger >= 1 && trigger <= N,
            "trigger level must be 1..=capacity"
        );
        let mut ring = Ring::new(N);
        ring.trigger = trigger;
        StreamBuffer {
            ring: UnsafeCell::new(ring),
            buf: UnsafeCell::new([0; N]),
        }
    }

    /// Writes as much of `data` as fits, waiting up to `timeout` for room for all of it.
    /// Returns the number of bytes written.
    pub fn send(&self, data: &[u8], timeout: Timeout) -> usize {
        block_on(timeout, |k, expired| {
            let (r, buf) = parts!(self);
            let fits = r.space() >= data.len().min(N);
            if !fits && !expired {
                return Step::Block(Some(&mut r.writers));
            }
            let n = data.len().min(r.space());
            r.write(buf, &data[..n]);
            if r.len >= r.trigger {
                Ring::wake_all(k, &mut r.readers);
            }
            Step::Done(n)
        })
    }

    /// Writes what fits now. Callable from interrupt handlers.
    pub fn try_send(&self, data: &[u8]) -> usize {
        self.send(data, Timeout::NONE)
    }

    /// Reads up to `out.len()` bytes, waiting up to `timeout` for the trigger level (or for
    /// `out.len()` bytes if that is less). On timeout, returns what is there (maybe 0).
    pub fn receive(&self, out: &mut [u8], timeout: Timeout) -> usize {
        block_on(timeout, |k, expired| {
            let (r, buf) = parts!(self);
            let want = r.trigger.min(out.len()).max(1);
            if r.len < want && !expired {
                return Step::Block(Some(&mut r.readers));
            }
            let n = r.len.min(out.len());
            r.peek(buf, 0, &mut out[..n]);
            r.consume(n);
            if n > 0 {
                Ring::wake_all(k, &mut r.writers);
            }
            Step::Done(n)
        })
    }

    /// Reads what is there now. Callable from interrupt handlers.
    pub fn try_receive(&self, out: &mut [u8]) -> usize {
        self.receive(out, Timeout::NONE)
    }

    /// Bytes waiting to be read.
    pub fn len(&self) -> usize {
        // SAFETY: inside a kernel critical section.
        rt::with(|_| unsafe { (*self.ring.get()).len })
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Room for writing.
    pub fn space(&self) -> usize {
        N - self.len()
    }

    /// Changes the trigger level (1..=capacity); wakes a reader it now satisfies.
    pub fn set_trigger_level(&self, trigger: usize) -> bool {
        if trigger == 0 || trigger > N {
            return false;
        }
        rt::with(|k| {
            let (r, _) = parts!(self);
            r.trigger = trigger;
            if r.len >= trigger {
                Ring::wake_all(k, &mut r.readers);
            }
        });
        true
    }

    /// Empties the buffer; fails (returns false) while a task is blocked on it.
    pub fn reset(&self) -> bool {
        rt::with(|_| {
            let (r, _) = parts!(self);
            if !r.readers.is_empty() || !r.writers.is_empty() {
                return false;
            }
            r.head = 0;
            r.len = 0;
            true
        })
    }
}

/// Why a message was not received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvError {
    /// No message before the timeout.
    TimedOut,
    /// The next message needs this many bytes; it stays in the buffer.
    TooSmall(usize),
}

/// Why a message was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// No room before the timeout.
    TimedOut,
    /// The message can never fit (with its 2-byte length) in this buffer.
    TooLarge,
}

/// Discrete messages of up to 65535 bytes in a buffer of `N` bytes (each takes its length
/// plus 2 bytes).
pub struct MessageBuffer<const N: usize> {
    ring: UnsafeCell<Ring>,
    buf: UnsafeCell<[u8; N]>,
}

// SAFETY: all state is touched only inside kernel critical sections.
unsafe impl<const N: usize> Sync for MessageBuffer<N> {}
// SAFETY: as above.
unsafe impl<const N: usize> Send for MessageBuffer<N> {}

impl<const N: usize> Default for MessageBuffer<N> {
    fn default() -> Self {
        Self::new()
    }
}

const LEN: usize = 2;

impl<const N: usize> MessageBuffer<N> {
    pub const fn new() -> Self {
        assert!(
            N > LEN,
            "a message buffer needs room for a length and a byte"
        );
        MessageBuffer {
            ring: UnsafeCell::new(Ring::new(N)),
            buf: UnsafeCell::new([0; N]),
        }
    }

    /// Sends one message whole, waiting up to `timeout` for room.
    pub fn send(&self, msg: &[u8], timeout: Timeout) -> Result<(), SendError> {
        if msg.len() > u16::MAX as usize || msg.len() + LEN > N {
            return Err(SendError::TooLarge);
        }
        block_on(timeout, |k, expired| {
            let (r, buf) = parts!(self);
            if r.space() < msg.len() + LEN {
                return if expired {
                    Step::Done(Err(SendError::TimedOut))
                } else {
                    Step::Block(Some(&mut r.writers))
                };
            }
            r.write(buf, &(msg.len() as u16).to_le_bytes());
            r.write(buf, msg);
            Ring::wake_all(k, &mut r.readers);
            Step::Done(Ok(()))
        })
    }

    /// Sends if there is room now. Callable from interrupt handlers.
    pub fn try_send(&self, msg: &[u8]) -> Result<(), SendError> {
        self.send(msg, Timeout::NONE)
    }

    /// Receives the next message into `out`, waiting up to `timeout`; returns its length.
    pub fn receive(&self, out: &mut [u8], timeout: Timeout) -> Result<usize, RecvError> {
        block_on(timeout, |k, expired| {
            let (r, buf) = parts!(self);
            if r.len == 0 {
                return if expired {
                    Step::Done(Err(RecvError::TimedOut))
                } else {
                    Step::Block(Some(&mut r.readers))
                };
            }
            let mut len = [0u8; LEN];
            r.peek(buf, 0, &mut len);
            let n = u16::from_le_bytes(len) as usize;
            if n > out.len() {
                return Step::Done(Err(RecvError::TooSmall(n)));
            }
            r.peek(buf, LEN, &mut out[..n]);
            r.consume(LEN + n);
            Ring::wake_all(k, &mut r.writers);
            Step::Done(Ok(n))
        })
    }

    /// Receives if a message is there now. Callable from interrupt handlers.
    pub fn try_receive(&self, out: &mut [u8]) -> Result<usize, RecvError> {
        self.receive(out, Timeout::NONE)
    }

    /// Length of the next message, if any.
    pub fn next_len(&self) -> Option<usize> {
        rt::with(|_| {
            let (r, buf) = parts!(self);
            (r.len > 0).then(|| {
                let mut len = [0u8; LEN];
                r.peek(buf, 0, &mut len);
                u16::from_le_bytes(len) as usize
            })
        })
    }

    /// Bytes free (a message needs its length plus 2).
    pub fn space(&self) -> usize {
        // SAFETY: inside a kernel critical section.
        rt::with(|_| unsafe { (*self.ring.get()).space() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_wraps_around() {
        let mut r = Ring::new(8);
        let mut buf = [0u8; 8];
        r.write(&mut buf, b"abcdef");
        let mut out = [0u8; 4];
        r.peek(&buf, 0, &mut out);
        assert_eq!(&out, b"abcd");
        r.consume(4);
        r.write(&mut buf, b"ghijk"); // wraps
        assert_eq!(r.len, 7);
        let mut out = [0u8; 7];
        r.peek(&buf, 0, &mut out);
        assert_eq!(&out, b"efghijk");
        let mut mid = [0u8; 3];
        r.peek(&buf, 2, &mut mid);
        assert_eq!(&mid, b"ghi");
    }

    #[test]
    fn stream_partial_writes_and_reads_without_blocking() {
        let s = StreamBuffer::<8>::new(1);
        assert_eq!(s.try_send(b"0123456789"), 8);
        assert_eq!(s.try_send(b"x"), 0);
        let mut out = [0u8; 5];
        assert_eq!(s.try_receive(&mut out), 5);
        assert_eq!(&out, b"01234");
        assert_eq!(s.len(), 3);
        assert!(!s.set_trigger_level(9));
        assert!(s.reset());
        assert!(s.is_empty());
    }

    #[test]
    fn messages_stay_whole() {
        let m = MessageBuffer::<16>::new();
        m.try_send(b"hello").unwrap();
        m.try_send(b"world!").unwrap();
        assert_eq!(
            m.try_send(b"x"),
            Err(SendError::TimedOut),
            "2+5 + 2+6 + 2+1 > 16"
        );
        assert_eq!(m.try_send(&[0; 15]), Err(SendError::TooLarge));
        let mut small = [0u8; 3];
        assert_eq!(m.try_receive(&mut small), Err(RecvError::TooSmall(5)));
        assert_eq!(m.next_len(), Some(5));
        let mut out = [0u8; 16];
        assert_eq!(m.try_receive(&mut out), Ok(5));
        assert_eq!(&out[..5], b"hello");
        assert_eq!(m.try_receive(&mut out), Ok(6));
        assert_eq!(&out[..6], b"world!");
        assert_eq!(m.try_receive(&mut out), Err(RecvError::TimedOut));
    }
}
