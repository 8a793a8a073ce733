//! What a boot decides: finish a swap cut short, revert an unconfirmed trial, install a
//! requested image that passes every check, then verify the primary image and hand it over.

use crate::status::{Install, Outcome, Refusal, State, Status, Swap, SwapKind, Trial};
use crate::{swap, Area, BootError, Layout, CHUNK};
use fqp_image::{Header, PayloadHash, TrustedKey, HEADER_LEN};
use fqp_port::{DeviceError, Flash};

/// What this boot did before handing over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing: the same image as last time.
    Unchanged,
    /// A new image was swapped in (and is on trial unless installed permanently).
    Installed,
    /// A requested image was refused; the running image stays.
    Refused(Refusal),
    /// The trial image never confirmed (or rejected itself) and the previous image is back.
    RolledBack { rejected: bool },
}

/// The image to run: verified, in the primary slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Booted {
    pub header: Header,
    /// The primary slot: the header at its start, the payload after it.
    pub slot: Area,
    /// This boot is the image's trial: it must confirm itself before the next.
    pub trial: bool,
    pub event: Event,
    /// The state as the image starts.
    pub state: State,
}

/// Reads and parses the header of the image in `slot`.
fn header(flash: &dyn Flash, slot: Area) -> Result<Result<Header, Refusal>, DeviceError> {
    let mut buf = [0u8; HEADER_LEN];
    flash.read(slot.offset, &mut buf)?;
    Ok(Header::parse(&buf).map_err(Refusal::Image))
}

/// Checks the image in `slot`: signature by a trusted key, size, payload, board, security
/// counter at least `floor`.
fn check(
    flash: &dyn Flash,
    slot: Area,
    keys: &[TrustedKey],
    board: &str,
    floor: u32,
) -> Result<Result<Header, Refusal>, DeviceError> {
    let h = match header(flash, slot)? {
        Ok(h) => h,
        Err(r) => return Ok(Err(r)),
    };
    if let Err(e) = h.verify_signature(keys) {
        return Ok(Err(Refusal::Image(e)));
    }
    if h.image_len() > slot.len as usize {
        return Ok(Err(Refusal::TooBig));
    }
    let mut hash = PayloadHash::new();
    let mut buf = [0u8; CHUNK];
    let mut at = slot.offset + HEADER_LEN as u32;
    let end = slot.offset + h.image_len() as u32;
    while at < end {
        let n = (end - at).min(CHUNK as u32) as usize;
        flash.read(at, &mut buf[..n])?;
        hash.update(&buf[..n]);
        at += n as u32;
    }
    if let Err(e) = h.check_payload(hash).and_then(|()| h.check_board(board)) {
        return Ok(Err(Refusal::Image(e)));
    }
    if h.security_counter < floor {
        return Ok(Err(Refusal::Counter));
    }
    Ok(Ok(h))
}

/// The sectors a swap must move: enough for the longer image of the two slots (the whole
/// slot where a header does not say).
fn span(flash: &dyn Flash, layout: &Layout) -> Result<u16, DeviceError> {
    let slot = layout.primary.len;
    let mut len = 0;
    for area in [layout.primary, layout.secondary] {
        len = len.max(match header(flash, area)? {
            Ok(h) => (h.image_len() as u32).min(slot),
            Err(_) => slot,
        });
    }
    Ok(len.div_ceil(layout.sector).clamp(1, u32::from(u16::MAX)) as u16)
}

/// Starts a swap of `kind` and carries it out.
fn swap(
    flash: &dyn Flash,
    layout: &Layout,
    status: &mut Status,
    kind: SwapKind,
    state: State,
) -> Result<(), DeviceError> {
    let sectors = span(flash, layout)?;
    status.save(State {
        pending: None,
        swap: Some(Swap {
            kind,
            sectors,
            next: 0,
            step: 0,
        }),
        ..state
    })?;
    swap::run(flash, layout, status)
}

/// Boots: the image to run, after whatever the status asks of this boot. `keys` are the
/// signers the board trusts, `board` its name as images carry it.
pub fn boot(
    flash: &dyn Flash,
    layout: &Layout,
    keys: &[TrustedKey],
    board: &str,
) -> Result<Booted, BootError> {
    let mut status = Status::read(flash, layout)?;
    let mut event = Event::Unchanged;
    // A swap cut short by a reset or power cut: finish it first.
    if let Some(s) = status.state().swap {
        swap::run(flash, layout, &mut status)?;
        event = match s.kind {
            SwapKind::Upgrade(_) => Event::Installed,
            SwapKind::Revert => Event::RolledBack {
                rejected: status.state().rejected_last(),
            },
        };
    }
    // The trial image had its boot and did not confirm: the previous image returns.
    let s = status.state();
    if s.trial == Trial::Booted && !s.confirmed {
        swap(flash, layout, &mut status, SwapKind::Revert, s)?;
        event = Event::RolledBack {
            rejected: s.rejected,
        };
    }
    // An image waits in the secondary slot.
    let s = status.state();
    if let Some(install) = s.pending {
        match check(flash, layout.secondary, keys, board, s.counter)? {
            Ok(new) => {
                let running = header(flash, layout.primary)?.ok();
                if running.is_some_and(|old| new.version <= old.version) {
                    refuse(&mut status, Refusal::Downgrade)?;
                    event = Event::Refused(Refusal::Downgrade);
                } else {
                    let counter = match install {
                        // Permanent: the old image never runs again.
                        Install::Permanent => s.counter.max(new.security_counter),
                        Install::Test => s.counter,
                    };
                    let kind = SwapKind::Upgrade(install);
                    swap(flash, layout, &mut status, kind, State { counter, ..s })?;
                    event = Event::Installed;
                }
            }
            Err(r) => {
                refuse(&mut status, r)?;
                event = Event::Refused(r);
            }
        }
    }
    // The image to run, checked every time.
    let s = status.state();
    match check(flash, layout.primary, keys, board, s.counter)? {
        Ok(header) => {
            let trial = s.trial != Trial::None;
            if s.trial == Trial::Installed {
                status.save(State {
                    trial: Trial::Booted,
                    ..s
                })?;
            }
            Ok(Booted {
                header,
                slot: layout.primary,
                trial,
                event,
                state: status.state(),
            })
        }
        // A trial image damaged in flash since it was checked: the previous one returns.
        Err(_) if s.trial != Trial::None && !s.confirmed => {
            swap(flash, layout, &mut status, SwapKind::Revert, s)?;
            let s = status.state();
            match check(flash, layout.primary, keys, board, s.counter)? {
                Ok(header) => Ok(Booted {
                    header,
                    slot: layout.primary,
                    trial: false,
                    event: Event::RolledBack { rejected: false },
                    state: s,
                }),
                Err(r) => Err(BootError::NoImage(r)),
            }
        }
        Err(r) => Err(BootError::NoImage(r)),
    }
}

fn refuse(status: &mut Status, r: Refusal) -> Result<(), DeviceError> {
    status.save(State {
        pending: None,
        last: Outcome::Refused(r),
        ..status.state()
    })
}

impl State {
    /// Whether the last rollback was the image's own rejection.
    fn rejected_last(&self) -> bool {
        self.last == Outcome::RolledBack { rejected: true }
    }
}
