//! Everything can be allocated statically: a task and every kind of object, with no heap use.

use crate::util::Counter;
use fqp_kernel::event_group::{EventGroup, WaitFor};
use fqp_kernel::mutex::Mutex;
use fqp_kernel::queue::Queue;
use fqp_kernel::semaphore::Semaphore;
use fqp_kernel::stream::StreamBuffer;
use fqp_kernel::task::{self, Builder, StaticStack};
use fqp_kernel::timer::Timer;
use fqp_kernel::Timeout;
use fqp_testkit::{check, check_eq, group, TestResult};

group!(pub STATIC_ALLOC, "static_alloc", [
    static_task_and_objects_use_no_heap,
    a_static_stack_is_handed_out_once,
]);

static STACK: StaticStack<256> = StaticStack::new();
static Q: Queue<u32, 2> = Queue::new();
static S: Semaphore = Semaphore::binary();
static M: Mutex<u32> = Mutex::new(0);
static E: EventGroup = EventGroup::new();
static SB: StreamBuffer<8> = StreamBuffer::new(1);
static T: Timer = Timer::new("static", 1, false, |_| {
    let _ = S.give();
});
static DONE: Counter = Counter::new();

fn worker(_: usize) {
    if let Ok(v) = Q.receive(Timeout::FOREVER) {
        *M.lock() += v;
        E.set(1);
        SB.try_send(&[v as u8]);
        DONE.set(v);
    }
}

fn static_task_and_objects_use_no_heap() -> TestResult {
    let before = fqp_testkit::heap_stats().map(|h| (h.allocations, h.free_bytes));
    let Some(stack) = STACK.take() else {
        fqp_testkit::skip!("the static stack was used by an earlier run in this boot")
    };
    let id = Builder::new("static")
        .priority(crate::util::HIGH)
        .static_stack(stack)
        .spawn_fn(worker, 0);
    check!(id.is_ok());
    check_eq!(Q.try_send(7), Ok(()));
    check_eq!(DONE.get(), 7);
    check_eq!(*M.lock(), 7);
    check_eq!(E.wait(WaitFor::any(1), Timeout::NONE), Ok(1));
    let mut b = [0u8; 1];
    check_eq!(SB.try_receive(&mut b), 1);
    T.start();
    check!(
        S.take(Timeout::ticks(5)).is_ok(),
        "static timer did not fire"
    );
    task::delay(2);
    let after = fqp_testkit::heap_stats().map(|h| (h.allocations, h.free_bytes));
    check_eq!(after, before);
    Ok(())
}

fn a_static_stack_is_handed_out_once() -> TestResult {
    static ONCE: StaticStack<64> = StaticStack::new();
    check!(ONCE.take().is_some());
    check!(ONCE.take().is_none());
    Ok(())
}
