//! The swap: sector by sector, through the scratch sector, each step recorded before the next.
//!
//! For sector *i* (primary P, secondary S, scratch X), with the step count recorded after
//! each: 0 → S[i] to X; 1 → P[i] to S[i]; 2 → X to P[i], and on to sector *i*+1. Each step
//! erases its destination and copies into it from a source the step does not touch, so a
//! step cut short is simply done again: P[i] and S[i] are each either whole or being
//! rewritten from a copy that is.

use crate::status::{Install, Outcome, State, Status, SwapKind, Trial};
use crate::{Area, Layout, CHUNK};
use fqp_port::{DeviceError, Flash};

/// Erases `to` and copies `len` bytes of `from` into it.
fn copy(flash: &dyn Flash, from: u32, to: u32, len: u32) -> Result<(), DeviceError> {
    flash.erase(to, len)?;
    let mut buf = [0u8; CHUNK];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(CHUNK as u32);
        let chunk = &mut buf[..n as usize];
        flash.read(from + done, chunk)?;
        // Erased bytes need no programming (and a sector's tail is often erased).
        if chunk.iter().any(|&b| b != 0xff) {
            flash.program(to + done, chunk)?;
        }
        done += n;
    }
    Ok(())
}

/// Carries the swap the state records to its end.
pub(crate) fn run(
    flash: &dyn Flash,
    layout: &Layout,
    status: &mut Status,
) -> Result<(), DeviceError> {
    let sector = layout.sector;
    let at = |area: Area, i: u16| area.offset + u32::from(i) * sector;
    while let Some(mut swap) = status.state().swap {
        if swap.next >= swap.sectors {
            return status.save(finished(status.state(), swap.kind));
        }
        let i = swap.next;
        match swap.step {
            0 => copy(
                flash,
                at(layout.secondary, i),
                layout.scratch.offset,
                sector,
            )?,
            1 => copy(
                flash,
                at(layout.primary, i),
                at(layout.secondary, i),
                sector,
            )?,
            _ => copy(flash, layout.scratch.offset, at(layout.primary, i), sector)?,
        }
        if swap.step == 2 {
            swap.next += 1;
            swap.step = 0;
        } else {
            swap.step += 1;
        }
        status.save(State {
            swap: Some(swap),
            ..status.state()
        })?;
    }
    Ok(())
}

/// The state once a swap of `kind` is complete.
fn finished(s: State, kind: SwapKind) -> State {
    match kind {
        SwapKind::Upgrade(install) => State {
            swap: None,
            trial: match install {
                Install::Test => Trial::Installed,
                Install::Permanent => Trial::None,
            },
            confirmed: install == Install::Permanent,
            rejected: false,
            last: Outcome::Installed,
            ..s
        },
        SwapKind::Revert => State {
            swap: None,
            trial: Trial::None,
            confirmed: true,
            rejected: false,
            last: Outcome::RolledBack {
                rejected: s.rejected,
            },
            ..s
        },
    }
}
