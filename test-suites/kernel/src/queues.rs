//! Queues and queue sets.

use crate::util::{helper, park, since, Counter, Trace, HIGH};
use alloc::boxed::Box;
use core::sync::atomic::{AtomicPtr, Ordering};
use fqp_kernel::queue::{Queue, SetError};
use fqp_kernel::queue_set::QueueSet;
use fqp_kernel::semaphore::Semaphore;
use fqp_kernel::{task, time, TimedOut, Timeout};
use fqp_testkit::{check, check_eq, group, irq, TestResult};

group!(pub QUEUE, "queue", [
    fifo_order,
    send_front_jumps_the_queue,
    full_queue_gives_the_item_back,
    send_times_out_when_full,
    receive_times_out_when_empty,
    peek_leaves_the_item,
    overwrite_is_a_mailbox,
    blocked_receiver_gets_the_item_at_once,
    blocked_sender_proceeds_when_room_appears,
    receivers_served_by_priority,
    large_items_copy_whole,
    items_are_dropped_exactly_once,
    reset_empties_and_unblocks_senders,
]);

group!(pub QUEUE_SET, "queue_set", [
    select_names_the_member_with_data,
    select_blocks_until_a_member_receives,
    select_times_out,
    membership_rules,
    interrupt_post_wakes_select,
]);

static Q4: Queue<u32, 4> = Queue::new();
static GOT: Counter = Counter::new();
static TRACE: Trace = Trace::new();

fn drain() {
    while Q4.try_receive().is_ok() {}
}

fn fifo_order() -> TestResult {
    drain();
    for i in 1..=4 {
        check_eq!(Q4.try_send(i), Ok(()));
    }
    check_eq!((Q4.len(), Q4.space(), Q4.capacity()), (4, 0, 4));
    for i in 1..=4 {
        check_eq!(Q4.try_receive(), Ok(i));
    }
    check!(Q4.is_empty());
    Ok(())
}

fn send_front_jumps_the_queue() -> TestResult {
    drain();
    let _ = Q4.try_send(1);
    let _ = Q4.try_send(2);
    check_eq!(Q4.try_send_front(0), Ok(()));
    check_eq!(
        [Q4.try_receive(), Q4.try_receive(), Q4.try_receive()],
        [Ok(0), Ok(1), Ok(2)]
    );
    Ok(())
}

fn full_queue_gives_the_item_back() -> TestResult {
    drain();
    for i in 0..4 {
        let _ = Q4.try_send(i);
    }
    check_eq!(Q4.try_send(99), Err(99));
    check_eq!(Q4.try_send_front(98), Err(98));
    Ok(())
}

fn send_times_out_when_full() -> TestResult {
    drain();
    for i in 0..4 {
        let _ = Q4.try_send(i);
    }
    task::delay(1);
    let t0 = time::now();
    check_eq!(Q4.send(7, Timeout::ticks(5)), Err(7));
    check_eq!(since(t0), 5);
    Ok(())
}

fn receive_times_out_when_empty() -> TestResult {
    drain();
    task::delay(1);
    let t0 = time::now();
    check_eq!(Q4.receive(Timeout::ticks(8)), Err(TimedOut));
    check_eq!(since(t0), 8);
    Ok(())
}

fn peek_leaves_the_item() -> TestResult {
    drain();
    let _ = Q4.try_send(5);
    check_eq!(Q4.peek(Timeout::NONE), Ok(5));
    check_eq!(Q4.len(), 1);
    check_eq!(Q4.try_receive(), Ok(5));
    check_eq!(Q4.peek(Timeout::NONE), Err(TimedOut));
    Ok(())
}

fn overwrite_is_a_mailbox() -> TestResult {
    static MAILBOX: Queue<u32, 1> = Queue::new();
    let _ = MAILBOX.try_receive();
    MAILBOX.overwrite(1);
    MAILBOX.overwrite(2);
    MAILBOX.overwrite(3);
    check_eq!(MAILBOX.len(), 1);
    check_eq!(MAILBOX.peek(Timeout::NONE), Ok(3));
    check_eq!(MAILBOX.try_receive(), Ok(3));
    check!(MAILBOX.is_empty());
    Ok(())
}

fn blocked_receiver_gets_the_item_at_once() -> TestResult {
    drain();
    GOT.set(0);
    helper("rx", HIGH, || {
        if let Ok(v) = Q4.receive(Timeout::FOREVER) {
            GOT.set(v);
        }
    });
    check_eq!(GOT.get(), 0);
    check_eq!(Q4.try_send(42), Ok(()));
    check_eq!(GOT.get(), 42); // the higher-priority receiver ran inside send
    check!(Q4.is_empty());
    Ok(())
}

fn blocked_sender_proceeds_when_room_appears() -> TestResult {
    drain();
    for i in 0..4 {
        let _ = Q4.try_send(i);
    }
    GOT.set(0);
    helper("tx", HIGH, || {
        if Q4.send(99, Timeout::FOREVER).is_ok() {
            GOT.set(1);
        }
    });
    check_eq!(GOT.get(), 0);
    check_eq!(Q4.try_receive(), Ok(0));
    check_eq!(GOT.get(), 1);
    for i in [1, 2, 3, 99] {
        check_eq!(Q4.try_receive(), Ok(i));
    }
    Ok(())
}

fn receivers_served_by_priority() -> TestResult {
    drain();
    TRACE.reset();
    for p in [HIGH, HIGH + 2, HIGH + 1] {
        helper("rx", p, move || {
            if let Ok(v) = Q4.receive(Timeout::FOREVER) {
                TRACE.push(p as u32 * 100 + v);
            }
        });
    }
    for v in 1..=3 {
        let _ = Q4.try_send(v);
    }
    let h = HIGH as u32 * 100;
    check_eq!(TRACE.events(), [h + 201, h + 102, h + 3]);
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Debug)]
struct Big {
    words: [u32; 16],
}

fn large_items_copy_whole() -> TestResult {
    let q: Box<Queue<Big, 3>> = Box::new(Queue::new());
    for n in 0..3 {
        let mut b = Big { words: [0; 16] };
        for (i, w) in b.words.iter_mut().enumerate() {
            *w = n * 1000 + i as u32;
        }
        check!(q.try_send(b).is_ok());
    }
    for n in 0..3u32 {
        let b = q
            .try_receive()
            .map_err(|_| fqp_testkit::Failure::new(file!(), line!(), format_args!("empty")))?;
        check!(
            b.words
                .iter()
                .enumerate()
                .all(|(i, &w)| w == n * 1000 + i as u32),
            "item {} damaged",
            n
        );
    }
    Ok(())
}

static DROPS: Counter = Counter::new();

struct Tracked(u32);

impl Drop for Tracked {
    fn drop(&mut self) {
        DROPS.inc();
    }
}

fn items_are_dropped_exactly_once() -> TestResult {
    DROPS.set(0);
    {
        let q: Box<Queue<Tracked, 2>> = Box::new(Queue::new());
        check!(q.try_send(Tracked(1)).is_ok());
        check!(q.try_send(Tracked(2)).is_ok());
        let back = q.try_send(Tracked(3));
        check!(back.is_err());
        drop(back); // the refused item comes back to us and is dropped here
        check_eq!(DROPS.get(), 1);
        let one = q.try_receive();
        check_eq!(one.as_ref().map(|t| t.0).ok(), Some(1));
        drop(one);
        check_eq!(DROPS.get(), 2);
    } // the queue drops the item still in it
    check_eq!(DROPS.get(), 3);
    Ok(())
}

fn reset_empties_and_unblocks_senders() -> TestResult {
    drain();
    for i in 0..4 {
        let _ = Q4.try_send(i);
    }
    GOT.set(0);
    helper("tx", HIGH, || {
        if Q4.send(50, Timeout::FOREVER).is_ok() {
            GOT.set(1);
        }
    });
    Q4.reset();
    check_eq!(GOT.get(), 1);
    check_eq!(Q4.len(), 1);
    check_eq!(Q4.try_receive(), Ok(50));
    Ok(())
}

fn select_names_the_member_with_data() -> TestResult {
    let set: &'static QueueSet<8> = Box::leak(Box::new(QueueSet::new()));
    let qa: &'static Queue<u32, 4> = Box::leak(Box::new(Queue::new()));
    let sem: &'static Semaphore = Box::leak(Box::new(Semaphore::binary()));
    let ma = set.add_queue(qa);
    let ms = set.add_semaphore(sem);
    check_eq!(ma, Ok(qa.member()));
    check_eq!(ms, Ok(sem.member()));
    check_eq!(set.try_select(), Err(TimedOut));
    check_eq!(qa.try_send(5), Ok(()));
    check_eq!(sem.give(), Ok(()));
    check_eq!(set.try_select(), Ok(qa.member()));
    check_eq!(qa.try_receive(), Ok(5));
    check_eq!(set.try_select(), Ok(sem.member()));
    check!(sem.try_take().is_ok());
    check_eq!(set.try_select(), Err(TimedOut));
    Ok(())
}

fn select_blocks_until_a_member_receives() -> TestResult {
    let set: &'static QueueSet<4> = Box::leak(Box::new(QueueSet::new()));
    let qa: &'static Queue<u8, 2> = Box::leak(Box::new(Queue::new()));
    let qb: &'static Queue<u8, 2> = Box::leak(Box::new(Queue::new()));
    check!(set.add_queue(qa).is_ok() && set.add_queue(qb).is_ok());
    let hit: &'static Counter = Box::leak(Box::new(Counter::new()));
    helper("select", HIGH, move || {
        if set.select(Timeout::FOREVER) == Ok(qb.member()) && qb.try_receive() == Ok(7) {
            hit.set(1);
        }
        park()
    });
    check_eq!(hit.get(), 0);
    check_eq!(qb.try_send(7), Ok(()));
    check_eq!(hit.get(), 1);
    Ok(())
}

fn select_times_out() -> TestResult {
    let set: &'static QueueSet<2> = Box::leak(Box::new(QueueSet::new()));
    let q: &'static Queue<u8, 2> = Box::leak(Box::new(Queue::new()));
    check!(set.add_queue(q).is_ok());
    task::delay(1);
    let t0 = time::now();
    check_eq!(set.select(Timeout::ticks(6)), Err(TimedOut));
    check_eq!(since(t0), 6);
    Ok(())
}

fn membership_rules() -> TestResult {
    let set: &'static QueueSet<5> = Box::leak(Box::new(QueueSet::new()));
    let other: &'static QueueSet<5> = Box::leak(Box::new(QueueSet::new()));
    let q: &'static Queue<u8, 4> = Box::leak(Box::new(Queue::new()));
    let full: &'static Queue<u8, 1> = Box::leak(Box::new(Queue::new()));
    let big: &'static Queue<u8, 2> = Box::leak(Box::new(Queue::new()));
    let _ = full.try_send(1);
    check_eq!(set.add_queue(full), Err(SetError::NotEmpty));
    check!(set.add_queue(q).is_ok());
    check_eq!(other.add_queue(q), Err(SetError::AlreadyInSet));
    check_eq!(set.add_queue(big), Err(SetError::SetTooSmall));
    Ok(())
}

static IRQ_Q: AtomicPtr<Queue<u8, 1>> = AtomicPtr::new(core::ptr::null_mut());

fn interrupt_post_wakes_select() -> TestResult {
    let set: &'static QueueSet<1> = Box::leak(Box::new(QueueSet::new()));
    let q: &'static mut Queue<u8, 1> = Box::leak(Box::new(Queue::new()));
    IRQ_Q.store(q, Ordering::Release);
    let q: &'static Queue<u8, 1> = q;
    check!(set.add_queue(q).is_ok());
    irq::set_handler(
        0,
        Some(|| {
            // SAFETY: the pointer was stored from a leaked (never freed) queue.
            if let Some(q) = unsafe { IRQ_Q.load(Ordering::Acquire).as_ref() } {
                let _ = q.try_send(3);
            }
        }),
    );
    GOT.set(0);
    helper("select", HIGH, move || {
        if set.select(Timeout::FOREVER) == Ok(q.member()) {
            GOT.set(q.try_receive().unwrap_or(0) as u32);
        }
        park()
    });
    check_eq!(GOT.get(), 0);
    irq::trigger(0);
    check_eq!(GOT.get(), 3);
    Ok(())
}
