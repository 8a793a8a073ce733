//! Fault and panic reporting: one protocol line on the console (polled, no kernel), then a
//! reset, so the host learns what happened and gets a fresh device.

use core::fmt::Write;
use core::ptr::read_volatile;
use cortex_m_rt::{exception, ExceptionFrame};
use fqp_protocol::{Kind, LineBuf};

const CFSR: *const u32 = 0xE000_ED28 as *const u32;
const HFSR: *const u32 = 0xE000_ED2C as *const u32;
const MMFAR: *const u32 = 0xE000_ED34 as *const u32;
const BFAR: *const u32 = 0xE000_ED38 as *const u32;

struct Hex(u32);

impl core::fmt::Display for Hex {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "0x{:08X}", self.0)
    }
}

fn report_fault(kind: &str, ef: &ExceptionFrame) -> ! {
    // SAFETY: the System Control Block's fault status registers are always readable.
    let (cfsr, hfsr, mmfar, bfar) = unsafe {
        (
            read_volatile(CFSR),
            read_volatile(HFSR),
            read_volatile(MMFAR),
            read_volatile(BFAR),
        )
    };
    let mut line = LineBuf::<320>::new(Kind::Fault)
        .field("kind", kind)
        .field("pc", Hex(ef.pc()))
        .field("lr", Hex(ef.lr()))
        .field("xpsr", Hex(ef.xpsr()))
        .field("cfsr", Hex(cfsr))
        .field("hfsr", Hex(hfsr))
        .field("mmfar", Hex(mmfar))
        .field("bfar", Hex(bfar));
    crate::console_uart().write(b"\n");
    crate::console_uart().write(line.finish());
    cortex_m::peripheral::SCB::sys_reset()
}

#[exception]
unsafe fn HardFault(ef: &ExceptionFrame) -> ! {
    report_fault("HardFault", ef)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    cortex_m::interrupt::disable();
    let (file, line) = info.location().map_or(("?", 0), |l| (l.file(), l.line()));
    let mut msg = heapless::String::<160>::new();
    let _ = write!(msg, "{}", info.message());
    let mut l = LineBuf::<320>::new(Kind::Panic)
        .field("file", file)
        .field("line", line)
        .field("msg", msg.as_str());
    crate::console_uart().write(b"\n");
    crate::console_uart().write(l.finish());
    cortex_m::peripheral::SCB::sys_reset()
}
