//! Queues: fixed-capacity FIFOs of typed items, copied in and out, with blocking send and
//! receive, send to front, overwrite (mailbox), peek, and non-blocking calls that interrupt
//! handlers may use.
//!
//! The ring buffer logic is type-erased (`RawQueue` works on item-sized byte slots), so every
//! `Queue<T, N>` shares one copy of the kernel code; the typed wrapper only moves values. The
//! exception is the common case of [`Queue::send`] and [`Queue::receive`] (room, or an item,
//! there already): one short critical section inlined into the typed call, where the item's
//! size is a constant and its copy a few word moves.

use crate::rt::{self, switch_if};
use crate::sched::{Kernel, WaitList};
use crate::time::{block_on, Step, TimedOut, Timeout};
use core::cell::UnsafeCell;
use core::mem::{ManuallyDrop, MaybeUninit};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Back,
    Front,
    Overwrite,
}

pub(crate) struct RawQueue {
    item: usize,
    cap: usize,
    head: usize,
    len: usize,
    senders: WaitList,
    receivers: WaitList,
    /// The queue set this queue belongs to, if any.
    set: Option<SetLink>,
}

/// Where a set member announces that it has something: the set's own queue of member keys.
#[derive(Clone, Copy)]
pub(crate) struct SetLink {
    raw: *const UnsafeCell<RawQueue>,
    buf: *mut u8,
    key: usize,
}

impl SetLink {
    /// Makes this the link of a member whose link slot is `slot`: refused when the member is
    /// in a set already, or not `empty` (the set would not know of what it holds).
    pub(crate) fn attach(self, slot: &mut Option<SetLink>, empty: bool) -> Result<(), SetError> {
        if slot.is_some() {
            return Err(SetError::AlreadyInSet);
        }
        if !empty {
            return Err(SetError::NotEmpty);
        }
        *slot = Some(self);
        Ok(())
    }

    /// Posts the member's key into the set and wakes a task selecting on it. Inside a kernel
    /// critical section.
    pub(crate) fn post(&self, k: &mut Kernel) {
        // SAFETY: sets are `'static` (required by `QueueSet::add_*`), so `raw` is live; we
        // are inside the kernel critical section that guards it.
        let set = unsafe { &mut *(*self.raw).get() };
        if set.len < set.cap {
            // SAFETY: there is room, and `buf` is the set's storage of `cap` keys.
            unsafe { set.put(self.buf, &self.key as *const usize as *const u8, Mode::Back) };
            wake_one(k, &mut set.receivers);
        }
    }
}

impl RawQueue {
    const fn new(item: usize, cap: usize) -> Self {
        RawQueue {
            item,
            cap,
            head: 0,
            len: 0,
            senders: WaitList::new(),
            receivers: WaitList::new(),
            set: None,
        }
    }

    fn slot(&self, buf: *mut u8, n: usize) -> *mut u8 {
        // SAFETY (for callers): `n < cap`, and `buf` holds `cap` items.
        buf.wrapping_add(n * self.item)
    }

    /// # Safety
    /// `buf` holds `cap` slots; `src` points to one item; the queue is not full, or `mode` is
    /// `Overwrite` and it is not empty.
    unsafe fn put(&mut self, buf: *mut u8, src: *const u8, mode: Mode) {
        let n = match mode {
            // SAFETY: the caller's contract.
            Mode::Back => return unsafe { self.push_back(buf, src, self.item) },
            Mode::Front => {
                self.head = (self.head + self.cap - 1) % self.cap;
                self.head
            }
            Mode::Overwrite => (self.head + self.len - 1) % self.cap,
        };
        // SAFETY: the slot is inside `buf` and does not overlap `src` (a caller's value).
        unsafe { copy_item(src, self.slot(buf, n), self.item) };
        if mode != Mode::Overwrite {
            self.len += 1;
        }
    }

    /// # Safety
    /// `buf` holds `cap` slots; `dst` has room for one item; the queue is not empty.
    unsafe fn get(&mut self, buf: *mut u8, dst: *mut u8, remove: bool) {
        if remove {
            // SAFETY: the caller's contract.
            return unsafe { self.pop_front(buf, dst, self.item) };
        }
        // SAFETY: the head slot is inside `buf`.
        unsafe { copy_item(self.slot(buf, self.head), dst, self.item) };
    }

    /// Appends the item at `src` behind the newest. `size` is the item size (a constant where
    /// the typed call inlines this).
    ///
    /// # Safety
    /// As for [`RawQueue::put`] with [`Mode::Back`]; `size` is `self.item`.
    #[inline(always)]
    unsafe fn push_back(&mut self, buf: *mut u8, src: *const u8, size: usize) {
        let mut n = self.head + self.len;
        if n >= self.cap {
            n -= self.cap;
        }
        // SAFETY: slot `n` is inside `buf` (n < cap) and free; `src` is the caller's item.
        unsafe { copy_item(src, buf.wrapping_add(n * size), size) };
        self.len += 1;
    }

    /// Takes the oldest item into `dst`.
    ///
    /// # Safety
    /// As for [`RawQueue::get`] with `remove`; `size` is `self.item`.
    #[inline(always)]
    unsafe fn pop_front(&mut self, buf: *mut u8, dst: *mut u8, size: usize) {
        // SAFETY: the head slot is inside `buf` and holds an item; `dst` has room for one.
        unsafe { copy_item(buf.wrapping_add(self.head * size), dst, size) };
        self.head += 1;
        if self.head == self.cap {
            self.head = 0;
        }
        self.len -= 1;
    }
}

/// Copies one item of `n` bytes. Items of whole words at word-aligned addresses (most
/// messages) move a word at a time: for a size known only at run time the compiler calls
/// `memcpy`, which on a core built for size goes byte by byte.
///
/// # Safety
/// `src` and `dst` are valid for `n` bytes and do not overlap.
#[inline(always)]
unsafe fn copy_item(src: *const u8, dst: *mut u8, n: usize) {
    if (src as usize | dst as usize | n) & 3 == 0 {
        let (s, d) = (src as *const u32, dst as *mut u32);
        for i in 0..n / 4 {
            // SAFETY: word `i` is inside both (n is a multiple of 4), and both are aligned.
            unsafe { d.add(i).write(s.add(i).read()) };
        }
    } else {
        // SAFETY: the caller's contract.
        unsafe { core::ptr::copy_nonoverlapping(src, dst, n) };
    }
}

/// Appends the item at `src` (`size` bytes) if there is room: the whole of a send that finds
/// room. Returns false, having changed nothing, if the queue is full.
#[inline(always)]
fn push_back_now(raw: &UnsafeCell<RawQueue>, buf: *mut u8, src: *const u8, size: usize) -> bool {
    rt::with(|k| {
        // SAFETY: inside a kernel critical section.
        let q = unsafe { &mut *raw.get() };
        if q.len == q.cap {
            return false;
        }
        // SAFETY: there is room; `size` is the queue's item size.
        unsafe { q.push_back(buf, src, size) };
        if !q.receivers.is_empty() || q.set.is_some() {
            announce_item(k, q);
        }
        true
    })
}

/// Takes the oldest item into `dst` (`size` bytes) if there is one: the whole of a receive
/// that finds an item. Returns false, having changed nothing, if the queue is empty.
#[inline(always)]
fn pop_front_now(raw: &UnsafeCell<RawQueue>, buf: *mut u8, dst: *mut u8, size: usize) -> bool {
    rt::with(|k| {
        // SAFETY: inside a kernel critical section.
        let q = unsafe { &mut *raw.get() };
        if q.len == 0 {
            return false;
        }
        // SAFETY: there is an item; `size` is the queue's item size.
        unsafe { q.pop_front(buf, dst, size) };
        if !q.senders.is_empty() {
            wake_one(k, &mut q.senders);
        }
        true
    })
}

/// An item arrived where a task waits for one, or in a queue set's member: tells them.
#[inline(never)]
fn announce_item(k: &mut Kernel, q: &mut RawQueue) {
    wake_one(k, &mut q.receivers);
    if let Some(set) = q.set {
        set.post(k);
    }
}

fn wake_one(k: &mut Kernel, w: &mut WaitList) {
    if let Some((_, due)) = k.wake_first(w) {
        switch_if(k, due);
    }
}

/// Sends one item (type-erased). On success the bytes at `src` belong to the queue.
fn send_raw(
    raw: &UnsafeCell<RawQueue>,
    buf: *mut u8,
    src: *const u8,
    mode: Mode,
    timeout: Timeout,
) -> Result<(), TimedOut> {
    block_on(timeout, |k, expired| {
        // SAFETY: inside a kernel critical section.
        let q = unsafe { &mut *raw.get() };
        let full = q.len == q.cap;
        if !full || (mode == Mode::Overwrite && q.len > 0) {
            let mode = if mode == Mode::Overwrite && !full {
                Mode::Back
            } else {
                mode
            };
            // SAFETY: checked above that there is room (or something to overwrite).
            unsafe { q.put(buf, src, mode) };
            announce_item(k, q);
            Step::Done(Ok(()))
        } else if expired {
            Step::Done(Err(TimedOut))
        } else {
            Step::Block(Some(&mut q.senders))
        }
    })
}

/// Receives (or peeks at) one item (type-erased) into `dst`.
fn recv_raw(
    raw: &UnsafeCell<RawQueue>,
    buf: *mut u8,
    dst: *mut u8,
    peek: bool,
    timeout: Timeout,
) -> Result<(), TimedOut> {
    block_on(timeout, |k, expired| {
        // SAFETY: inside a kernel critical section.
        let q = unsafe { &mut *raw.get() };
        if q.len > 0 {
            // SAFETY: the queue is not empty.
            unsafe { q.get(buf, dst, !peek) };
            if peek {
                // The item is still there: let the next receiver have a look too.
                wake_one(k, &mut q.receivers);
            } else {
                wake_one(k, &mut q.senders);
            }
            Step::Done(Ok(()))
        } else if expired {
            Step::Done(Err(TimedOut))
        } else {
            Step::Block(Some(&mut q.receivers))
        }
    })
}

/// A queue of at most `N` items of type `T`.
pub struct Queue<T, const N: usize> {
    raw: UnsafeCell<RawQueue>,
    buf: UnsafeCell<[MaybeUninit<T>; N]>,
}

// SAFETY: items move between tasks through the queue, so `T: Send` suffices; all state is
// touched only inside kernel critical sections.
unsafe impl<T: Send, const N: usize> Sync for Queue<T, N> {}
// SAFETY: as above.
unsafe impl<T: Send, const N: usize> Send for Queue<T, N> {}

impl<T, const N: usize> Default for Queue<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, const N: usize> Queue<T, N> {
    /// An empty queue; usable in a `static`.
    pub const fn new() -> Self {
        assert!(N > 0, "a queue needs room for at least one item");
        Queue {
            raw: UnsafeCell::new(RawQueue::new(core::mem::size_of::<T>(), N)),
            buf: UnsafeCell::new([const { MaybeUninit::uninit() }; N]),
        }
    }

    fn buf(&self) -> *mut u8 {
        self.buf.get() as *mut u8
    }

    fn put(&self, item: T, mode: Mode, timeout: Timeout) -> Result<(), T> {
        let item = ManuallyDrop::new(item);
        let src = &*item as *const T as *const u8;
        match send_raw(&self.raw, self.buf(), src, mode, timeout) {
            Ok(()) => Ok(()),
            Err(TimedOut) => Err(ManuallyDrop::into_inner(item)),
        }
    }

    /// Appends `item`, waiting up to `timeout` for room; gives it back on timeout.
    #[inline]
    pub fn send(&self, item: T, timeout: Timeout) -> Result<(), T> {
        let item = ManuallyDrop::new(item);
        let src = &*item as *const T as *const u8;
        if push_back_now(&self.raw, self.buf(), src, core::mem::size_of::<T>()) {
            return Ok(());
        }
        self.put(ManuallyDrop::into_inner(item), Mode::Back, timeout)
    }

    /// Puts `item` at the front (it is received next).
    pub fn send_front(&self, item: T, timeout: Timeout) -> Result<(), T> {
        self.put(item, Mode::Front, timeout)
    }

    /// Appends `item` if there is room. Callable from interrupt handlers.
    pub fn try_send(&self, item: T) -> Result<(), T> {
        self.send(item, Timeout::NONE)
    }

    /// Puts `item` at the front if there is room. Callable from interrupt handlers.
    pub fn try_send_front(&self, item: T) -> Result<(), T> {
        self.send_front(item, Timeout::NONE)
    }

    fn take(&self, peek: bool, timeout: Timeout) -> Result<T, TimedOut> {
        let mut out = MaybeUninit::<T>::uninit();
        recv_raw(
            &self.raw,
            self.buf(),
            out.as_mut_ptr() as *mut u8,
            peek,
            timeout,
        )?;
        // SAFETY: recv_raw copied a whole item in.
        Ok(unsafe { out.assume_init() })
    }

    /// Removes the oldest item, waiting up to `timeout` for one.
    #[inline]
    pub fn receive(&self, timeout: Timeout) -> Result<T, TimedOut> {
        let mut out = MaybeUninit::<T>::uninit();
        let dst = out.as_mut_ptr() as *mut u8;
        if pop_front_now(&self.raw, self.buf(), dst, core::mem::size_of::<T>()) {
            // SAFETY: a whole item was copied in.
            return Ok(unsafe { out.assume_init() });
        }
        self.take(false, timeout)
    }

    /// Removes the oldest item if there is one. Callable from interrupt handlers.
    pub fn try_receive(&self) -> Result<T, TimedOut> {
        self.receive(Timeout::NONE)
    }

    /// Number of items queued.
    pub fn len(&self) -> usize {
        // SAFETY: inside a kernel critical section.
        rt::with(|_| unsafe { (*self.raw.get()).len })
    }

    /// True if no item is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Free slots.
    pub fn space(&self) -> usize {
        N - self.len()
    }

    /// Capacity.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// This queue's identity in a [`QueueSet`](crate::queue_set::QueueSet).
    pub fn member(&self) -> Member {
        Member(&self.raw as *const _ as usize)
    }

    /// Where a set member posts `key` when this queue is a set's queue of keys.
    pub(crate) fn set_link(&'static self, key: usize) -> SetLink {
        SetLink {
            raw: &self.raw,
            buf: self.buf(),
            key,
        }
    }

    /// Makes this (empty) queue a member of the set `l` posts to. Inside a kernel critical
    /// section (caller's duty).
    pub(crate) fn join_set(&self, l: SetLink) -> Result<(), SetError> {
        // SAFETY: inside a kernel critical section.
        let raw = unsafe { &mut *self.raw.get() };
        l.attach(&mut raw.set, raw.len == 0)
    }
}

impl<T: Copy, const N: usize> Queue<T, N> {
    /// Copies the oldest item without removing it, waiting up to `timeout` for one.
    pub fn peek(&self, timeout: Timeout) -> Result<T, TimedOut> {
        self.take(true, timeout)
    }

    /// Appends `item`, or replaces the newest item if the queue is full (for a one-item
    /// queue: a mailbox that always holds the latest value). Never blocks; callable from
    /// interrupt handlers.
    pub fn overwrite(&self, item: T) {
        let sent = self.put(item, Mode::Overwrite, Timeout::NONE);
        debug_assert!(sent.is_ok(), "overwrite always has room");
    }

    /// Empties the queue; blocked senders get room.
    pub fn reset(&self) {
        rt::with(|k| {
            // SAFETY: inside a kernel critical section.
            let q = unsafe { &mut *self.raw.get() };
            q.len = 0;
            q.head = 0;
            while let Some((_, due)) = k.wake_first(&mut q.senders) {
                switch_if(k, due);
            }
        });
    }
}

impl<T, const N: usize> Drop for Queue<T, N> {
    fn drop(&mut self) {
        if core::mem::needs_drop::<T>() {
            let q = self.raw.get_mut();
            let buf = self.buf.get_mut();
            for n in 0..q.len {
                // SAFETY: the `len` slots from `head` hold initialised items, dropped once.
                unsafe { buf[(q.head + n) % N].assume_init_drop() };
            }
        }
    }
}

/// A set member's identity, as returned by
/// [`QueueSet::select`](crate::queue_set::QueueSet::select); compare it with `queue.member()`
/// or `semaphore.member()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Member(pub(crate) usize);

/// Why an object could not join a set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetError {
    /// Members must be empty when they join (else the set would not know of their items).
    NotEmpty,
    /// An object belongs to at most one set.
    AlreadyInSet,
    /// The set's capacity must cover the capacities of all its members.
    SetTooSmall,
}

impl Member {
    pub(crate) fn of<T>(p: *const T) -> Member {
        Member(p as usize)
    }
}
