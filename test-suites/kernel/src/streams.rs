//! Stream buffers and message buffers.

use crate::util::{helper, park, since, Counter, HIGH};
use alloc::boxed::Box;
use core::sync::atomic::{AtomicPtr, Ordering};
use fqp_kernel::stream::{MessageBuffer, RecvError, SendError, StreamBuffer};
use fqp_kernel::{task, time, Timeout};
use fqp_testkit::{check, check_eq, group, irq, TestResult};

group!(pub STREAM_BUFFER, "stream_buffer", [
    bytes_arrive_in_order_across_the_wrap,
    reader_wakes_at_the_trigger_level,
    timeout_returns_what_arrived,
    writer_waits_for_room,
    interrupt_feeds_a_task,
]);

group!(pub MESSAGE_BUFFER, "message_buffer", [
    messages_keep_their_boundaries,
    small_buffer_leaves_the_message,
    blocked_reader_gets_the_message,
    sender_waits_for_room_for_the_whole_message,
    oversized_messages_are_refused,
]);

static GOT: Counter = Counter::new();

fn leak<T>(v: T) -> &'static T {
    Box::leak(Box::new(v))
}

fn bytes_arrive_in_order_across_the_wrap() -> TestResult {
    let s = leak(StreamBuffer::<10>::new(1));
    let mut next = 0u8;
    let mut expect = 0u8;
    for _ in 0..20 {
        let chunk: [u8; 7] = core::array::from_fn(|i| next.wrapping_add(i as u8));
        check_eq!(s.try_send(&chunk), 7);
        next = next.wrapping_add(7);
        let mut out = [0u8; 7];
        check_eq!(s.try_receive(&mut out), 7);
        for b in out {
            check_eq!(b, expect);
            expect = expect.wrapping_add(1);
        }
    }
    check!(s.is_empty());
    Ok(())
}

fn reader_wakes_at_the_trigger_level() -> TestResult {
    let s = leak(StreamBuffer::<32>::new(4));
    GOT.set(0);
    helper("reader", HIGH, move || {
        let mut buf = [0u8; 16];
        GOT.set(s.receive(&mut buf, Timeout::FOREVER) as u32);
        park()
    });
    check_eq!(s.try_send(b"ab"), 2);
    check_eq!(GOT.get(), 0); // below the trigger level: still waiting
    check_eq!(s.try_send(b"cd"), 2);
    check_eq!(GOT.get(), 4);
    Ok(())
}

fn timeout_returns_what_arrived() -> TestResult {
    let s = leak(StreamBuffer::<32>::new(8));
    check_eq!(s.try_send(b"xyz"), 3);
    task::delay(1);
    let t0 = time::now();
    let mut out = [0u8; 16];
    let n = s.receive(&mut out, Timeout::ticks(5));
    check_eq!(since(t0), 5);
    check_eq!(&out[..n], b"xyz");
    Ok(())
}

fn writer_waits_for_room() -> TestResult {
    let s = leak(StreamBuffer::<8>::new(1));
    check_eq!(s.try_send(b"12345678"), 8);
    GOT.set(0);
    helper("writer", HIGH, move || {
        GOT.set(s.send(b"abcd", Timeout::FOREVER) as u32);
        park()
    });
    check_eq!(GOT.get(), 0);
    let mut out = [0u8; 4];
    check_eq!(s.try_receive(&mut out), 4);
    check_eq!(GOT.get(), 4);
    let mut rest = [0u8; 8];
    check_eq!(s.try_receive(&mut rest), 8);
    check_eq!(&rest, b"5678abcd");
    Ok(())
}

static ISR_STREAM: AtomicPtr<StreamBuffer<16>> = AtomicPtr::new(core::ptr::null_mut());

fn interrupt_feeds_a_task() -> TestResult {
    let s: &'static mut StreamBuffer<16> = Box::leak(Box::new(StreamBuffer::new(3)));
    ISR_STREAM.store(s, Ordering::Release);
    irq::set_handler(
        0,
        Some(|| {
            // SAFETY: points to a leaked stream buffer, never freed.
            if let Some(s) = unsafe { ISR_STREAM.load(Ordering::Acquire).as_ref() } {
                s.try_send(b"i");
            }
        }),
    );
    GOT.set(0);
    let s: &'static StreamBuffer<16> = s;
    helper("reader", HIGH, move || {
        let mut buf = [0u8; 8];
        GOT.set(s.receive(&mut buf, Timeout::FOREVER) as u32);
        park()
    });
    irq::trigger(0);
    irq::trigger(0);
    check_eq!(GOT.get(), 0);
    irq::trigger(0);
    check_eq!(GOT.get(), 3);
    Ok(())
}

fn messages_keep_their_boundaries() -> TestResult {
    let m = leak(MessageBuffer::<64>::new());
    for msg in [&b"a"[..], b"bcd", b"efgh"] {
        check_eq!(m.try_send(msg), Ok(()));
    }
    let mut out = [0u8; 16];
    for msg in [&b"a"[..], b"bcd", b"efgh"] {
        let n = m.try_receive(&mut out);
        check_eq!(n, Ok(msg.len()));
        check_eq!(&out[..msg.len()], msg);
    }
    check_eq!(m.try_receive(&mut out), Err(RecvError::TimedOut));
    Ok(())
}

fn small_buffer_leaves_the_message() -> TestResult {
    let m = leak(MessageBuffer::<64>::new());
    check_eq!(m.try_send(b"0123456789"), Ok(()));
    let mut small = [0u8; 4];
    check_eq!(m.try_receive(&mut small), Err(RecvError::TooSmall(10)));
    check_eq!(m.next_len(), Some(10));
    let mut out = [0u8; 10];
    check_eq!(m.try_receive(&mut out), Ok(10));
    check_eq!(&out, b"0123456789");
    Ok(())
}

fn blocked_reader_gets_the_message() -> TestResult {
    let m = leak(MessageBuffer::<64>::new());
    GOT.set(0);
    helper("reader", HIGH, move || {
        let mut buf = [0u8; 32];
        if let Ok(n) = m.receive(&mut buf, Timeout::FOREVER) {
            GOT.set(n as u32 * 1000 + buf[0] as u32);
        }
        park()
    });
    check_eq!(m.try_send(b"Zebra"), Ok(()));
    check_eq!(GOT.get(), 5000 + b'Z' as u32);
    Ok(())
}

fn sender_waits_for_room_for_the_whole_message() -> TestResult {
    let m = leak(MessageBuffer::<16>::new());
    check_eq!(m.try_send(&[1; 10]), Ok(())); // 12 of 16 bytes used
    GOT.set(0);
    helper("writer", HIGH, move || {
        if m.send(&[2; 6], Timeout::FOREVER).is_ok() {
            GOT.set(1);
        }
        park()
    });
    check_eq!(GOT.get(), 0); // 8 bytes needed, 4 free: it must not send a part
    let mut out = [0u8; 16];
    check_eq!(m.try_receive(&mut out), Ok(10));
    check_eq!(GOT.get(), 1);
    check_eq!(m.try_receive(&mut out), Ok(6));
    check_eq!(&out[..6], &[2; 6]);
    Ok(())
}

fn oversized_messages_are_refused() -> TestResult {
    let m = leak(MessageBuffer::<16>::new());
    check_eq!(m.try_send(&[0; 15]), Err(SendError::TooLarge));
    check_eq!(m.send(&[0; 15], Timeout::FOREVER), Err(SendError::TooLarge));
    check_eq!(m.try_send(&[0; 14]), Ok(()));
    check_eq!(m.space(), 0);
    Ok(())
}
