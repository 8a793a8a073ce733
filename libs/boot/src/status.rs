//! The status area: a log of whole-state snapshots in two sectors.
//!
//! Each record is [`RECORD`] bytes (or the flash's write unit, if larger) written by one
//! program operation, its last four bytes a check over the rest, so a record cut short reads
//! as not written. A sector starts with a header record (magic and sequence number); the
//! valid sector with the newest sequence is the active one and its last valid snapshot is the
//! state. When the active sector is full, the state is written to the other sector — erased,
//! then the snapshot, then the header last — which takes over only once complete. Before any
//! record exists the state is [`State::FRESH`]: a factory-installed primary, confirmed.

use crate::{Area, Layout};
use fqp_image::ImageError;
use fqp_port::{DeviceError, Flash};

/// A record's bytes (a larger write unit pads it with zeros).
pub const RECORD: usize = 16;
/// The largest write unit the status area supports.
pub const RECORD_MAX: usize = 256;

const SNAPSHOT: u8 = b'S';
const HEADER: u8 = b'H';
const MAGIC: [u8; 4] = *b"FQPB";

/// The bytes a record takes with write unit `write`.
pub fn record_len(write: u32) -> usize {
    RECORD.max(write as usize)
}

/// How a requested image is to be installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Install {
    /// Booted once; reverted on the next boot unless it confirms itself.
    Test,
    /// Confirmed as soon as it is in place.
    Permanent,
}

/// Where a newly installed image stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trial {
    /// No trial: the primary image is the confirmed one (or the trial ended).
    None,
    /// Swapped in, not yet booted.
    Installed,
    /// Booted once and not confirmed: the next boot reverts it.
    Booted,
}

/// Why the boot loader refused an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The image itself: its signature, hash, format or board.
    Image(ImageError),
    /// Not newer than the running image.
    Downgrade,
    /// Its security counter is below the one the board has reached.
    Counter,
    /// Larger than a slot.
    TooBig,
}

impl Refusal {
    /// A short reason, as job status details and the console give it.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Image(e) => e.reason(),
            Refusal::Downgrade => "downgrade refused",
            Refusal::Counter => "security counter too low",
            Refusal::TooBig => "image larger than a slot",
        }
    }

    fn code(self) -> u8 {
        match self {
            Refusal::Image(e) => match e {
                ImageError::Truncated => 1,
                ImageError::NotAnImage => 2,
                ImageError::UnknownFormat => 3,
                ImageError::BadBoardName => 4,
                ImageError::UnknownSigner => 5,
                ImageError::BadSignature => 6,
                ImageError::Corrupted => 7,
                ImageError::OtherBoard => 8,
            },
            Refusal::Downgrade => 9,
            Refusal::Counter => 10,
            Refusal::TooBig => 11,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => Refusal::Image(ImageError::Truncated),
            2 => Refusal::Image(ImageError::NotAnImage),
            3 => Refusal::Image(ImageError::UnknownFormat),
            4 => Refusal::Image(ImageError::BadBoardName),
            5 => Refusal::Image(ImageError::UnknownSigner),
            6 => Refusal::Image(ImageError::BadSignature),
            7 => Refusal::Image(ImageError::Corrupted),
            8 => Refusal::Image(ImageError::OtherBoard),
            9 => Refusal::Downgrade,
            10 => Refusal::Counter,
            11 => Refusal::TooBig,
            _ => return None,
        })
    }
}

/// How the last update requested ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// None requested yet.
    None,
    /// Swapped in (confirmed or on trial: see [`State::trial`]).
    Installed,
    /// Refused before it was swapped in; the running image is unchanged.
    Refused(Refusal),
    /// Booted unconfirmed, then swapped back out; `rejected` when the image said so itself
    /// ([`Status::reject`]), else it never confirmed (crashed, hung, or timed out).
    RolledBack { rejected: bool },
}

/// Which way a swap moves images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwapKind {
    Upgrade(Install),
    Revert,
}

/// A swap under way: sectors `0..sectors` of the slots, `step` (0–2) steps of sector `next`
/// done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Swap {
    pub kind: SwapKind,
    pub sectors: u16,
    pub next: u16,
    pub step: u8,
}

/// The boot loader's whole state, as the newest snapshot holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State {
    /// An image waiting in the secondary slot.
    pub pending: Option<Install>,
    pub swap: Option<Swap>,
    pub trial: Trial,
    /// The primary image confirmed itself (a factory image is).
    pub confirmed: bool,
    /// The trial image rejected itself.
    pub rejected: bool,
    /// The lowest security counter an image may have.
    pub counter: u32,
    pub last: Outcome,
}

impl State {
    /// The state of a board that never updated.
    pub const FRESH: State = State {
        pending: None,
        swap: None,
        trial: Trial::None,
        confirmed: true,
        rejected: false,
        counter: 0,
        last: Outcome::None,
    };

    fn encode(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0] = SNAPSHOT;
        let pending = match self.pending {
            None => 0,
            Some(Install::Test) => 1,
            Some(Install::Permanent) => 2,
        };
        let (swap, kind) = match self.swap.map(|s| s.kind) {
            None => (0, 0),
            Some(SwapKind::Upgrade(Install::Test)) => (1, 0),
            Some(SwapKind::Upgrade(Install::Permanent)) => (1, 1),
            Some(SwapKind::Revert) => (1, 2),
        };
        let trial = match self.trial {
            Trial::None => 0,
            Trial::Installed => 1,
            Trial::Booted => 2,
        };
        b[1] = pending | swap << 2 | kind << 3 | trial << 5 | (self.confirmed as u8) << 7;
        let (last, reason) = match self.last {
            Outcome::None => (0, 0),
            Outcome::Installed => (1, 0),
            Outcome::Refused(r) => (2, r.code()),
            Outcome::RolledBack { rejected: false } => (3, 0),
            Outcome::RolledBack { rejected: true } => (4, 0),
        };
        let swap = self.swap.unwrap_or(Swap {
            kind: SwapKind::Revert,
            sectors: 0,
            next: 0,
            step: 0,
        });
        b[2] = last | (self.rejected as u8) << 3 | swap.step << 4;
        b[3] = reason;
        b[4..6].copy_from_slice(&swap.sectors.to_le_bytes());
        b[6..8].copy_from_slice(&swap.next.to_le_bytes());
        b[8..12].copy_from_slice(&self.counter.to_le_bytes());
        b
    }

    fn decode(b: &[u8; 12]) -> Option<State> {
        if b[0] != SNAPSHOT {
            return None;
        }
        let pending = match b[1] & 3 {
            0 => None,
            1 => Some(Install::Test),
            2 => Some(Install::Permanent),
            _ => return None,
        };
        let kind = match (b[1] >> 3) & 3 {
            0 => SwapKind::Upgrade(Install::Test),
            1 => SwapKind::Upgrade(Install::Permanent),
            2 => SwapKind::Revert,
            _ => return None,
        };
        let step = b[2] >> 4;
        let swap = (b[1] >> 2 & 1 == 1).then_some(Swap {
            kind,
            sectors: u16::from_le_bytes([b[4], b[5]]),
            next: u16::from_le_bytes([b[6], b[7]]),
            step,
        });
        let trial = match (b[1] >> 5) & 3 {
            0 => Trial::None,
            1 => Trial::Installed,
            2 => Trial::Booted,
            _ => return None,
        };
        let last = match b[2] & 7 {
            0 => Outcome::None,
            1 => Outcome::Installed,
            2 => Outcome::Refused(Refusal::from_code(b[3])?),
            3 => Outcome::RolledBack { rejected: false },
            4 => Outcome::RolledBack { rejected: true },
            _ => return None,
        };
        if step > 2 {
            return None;
        }
        Some(State {
            pending,
            swap,
            trial,
            confirmed: b[1] >> 7 == 1,
            rejected: b[2] >> 3 & 1 == 1,
            counter: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            last,
        })
    }
}

/// FNV-1a, the records' check: any cut-short record fails it (its unwritten bytes read as
/// 0xFF).
fn check(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

fn seal(body: [u8; 12]) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[..12].copy_from_slice(&body);
    r[12..].copy_from_slice(&check(&body).to_le_bytes());
    r
}

fn unseal(r: &[u8]) -> Option<[u8; 12]> {
    let body: [u8; 12] = r[..12].try_into().ok()?;
    (r[12..16] == check(&body).to_le_bytes()).then_some(body)
}

/// One half of the status area, as read.
#[derive(Clone, Copy, Debug)]
struct Half {
    /// Its header's sequence number, if it has a valid header.
    seq: Option<u32>,
    /// Its newest valid snapshot.
    state: Option<State>,
    /// The first record slot after every written one.
    free: u32,
}

/// The status area of a flash: the state read from it, and the way to change it.
pub struct Status<'f> {
    flash: &'f dyn Flash,
    area: Area,
    sector: u32,
    record: u32,
    /// The active half (0 or 1) and its sequence number; `None` before the first record.
    active: Option<(u32, u32)>,
    /// The next free record slot of the active half.
    free: u32,
    state: State,
}

impl core::fmt::Debug for Status<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Status")
            .field("active", &self.active)
            .field("free", &self.free)
            .field("state", &self.state)
            .finish()
    }
}

impl<'f> Status<'f> {
    /// Reads the state.
    pub fn read(flash: &'f dyn Flash, layout: &Layout) -> Result<Self, DeviceError> {
        let record = record_len(flash.write_size()) as u32;
        let mut status = Status {
            flash,
            area: layout.status,
            sector: layout.sector,
            record,
            active: None,
            free: 0,
            state: State::FRESH,
        };
        let halves = [status.half(0)?, status.half(1)?];
        let newer = |a: u32, b: u32| (a.wrapping_sub(b) as i32) > 0;
        let pick = match (halves[0].seq, halves[1].seq) {
            (Some(a), Some(b)) if newer(b, a) => Some(1),
            (Some(_), _) => Some(0),
            (None, Some(_)) => Some(1),
            (None, None) => None,
        };
        if let Some(i) = pick {
            let h = halves[i as usize];
            // A valid header is written after the half's first snapshot: it has one.
            if let (Some(seq), Some(state)) = (h.seq, h.state) {
                status.active = Some((i, seq));
                status.free = h.free;
                status.state = state;
            }
        }
        Ok(status)
    }

    fn half(&self, i: u32) -> Result<Half, DeviceError> {
        let base = self.area.offset + i * self.sector;
        let slots = self.sector / self.record;
        let mut buf = [0u8; RECORD];
        let mut half = Half {
            seq: None,
            state: None,
            free: 1,
        };
        for slot in 0..slots {
            self.flash.read(base + slot * self.record, &mut buf)?;
            if buf.iter().all(|&b| b == 0xff) {
                continue;
            }
            if slot > 0 {
                half.free = slot + 1;
            }
            let Some(body) = unseal(&buf) else { continue };
            if slot == 0 {
                if body[0] == HEADER && body[4..8] == MAGIC {
                    half.seq = Some(u32::from_le_bytes([body[8], body[9], body[10], body[11]]));
                }
            } else if let Some(state) = State::decode(&body) {
                half.state = Some(state);
            }
        }
        Ok(half)
    }

    /// The state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Records `state` as the new state: one record, or a compaction into the other half.
    pub fn save(&mut self, state: State) -> Result<(), DeviceError> {
        let slots = self.sector / self.record;
        match self.active {
            Some((i, _)) if self.free < slots => {
                let at = self.area.offset + i * self.sector + self.free * self.record;
                self.program(at, &seal(state.encode()))?;
                self.free += 1;
            }
            _ => {
                let (i, seq) = match self.active {
                    Some((i, seq)) => (1 - i, seq.wrapping_add(1)),
                    None => (0, 1),
                };
                let base = self.area.offset + i * self.sector;
                self.flash.erase(base, self.sector)?;
                self.program(base + self.record, &seal(state.encode()))?;
                let mut header = [0u8; 12];
                header[0] = HEADER;
                header[4..8].copy_from_slice(&MAGIC);
                header[8..12].copy_from_slice(&seq.to_le_bytes());
                self.program(base, &seal(header))?;
                self.active = Some((i, seq));
                self.free = 2;
            }
        }
        self.state = state;
        Ok(())
    }

    fn program(&self, at: u32, record: &[u8; RECORD]) -> Result<(), DeviceError> {
        let mut buf = [0u8; RECORD_MAX];
        buf[..RECORD].copy_from_slice(record);
        self.flash.program(at, &buf[..self.record as usize])
    }

    /// Asks the boot loader to install the image in the secondary slot at the next boot.
    /// Refused (false) while the running image is itself on trial or a swap is unfinished:
    /// confirm first.
    pub fn request(&mut self, install: Install) -> Result<bool, DeviceError> {
        let s = self.state;
        if s.swap.is_some() || s.trial != Trial::None || !s.confirmed {
            return Ok(false);
        }
        self.save(State {
            pending: Some(install),
            ..s
        })
        .map(|()| true)
    }

    /// Withdraws a request not yet acted on (an aborted update).
    pub fn withdraw(&mut self) -> Result<(), DeviceError> {
        if self.state.pending.is_none() {
            return Ok(());
        }
        self.save(State {
            pending: None,
            ..self.state
        })
    }

    /// Confirms the running image (after its self test): it stays, and its security counter
    /// becomes the board's floor. `counter` is the running image's.
    pub fn confirm(&mut self, counter: u32) -> Result<(), DeviceError> {
        let s = self.state;
        if s.confirmed && s.trial == Trial::None && s.counter >= counter {
            return Ok(());
        }
        self.save(State {
            confirmed: true,
            trial: Trial::None,
            rejected: false,
            counter: s.counter.max(counter),
            ..s
        })
    }

    /// The running trial image rejects itself (its self test failed): the next boot reverts
    /// it. False when the running image is not on trial.
    pub fn reject(&mut self) -> Result<bool, DeviceError> {
        let s = self.state;
        if s.trial != Trial::Booted || s.confirmed {
            return Ok(false);
        }
        self.save(State {
            rejected: true,
            ..s
        })
        .map(|()| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_state() -> impl Strategy<Value = State> {
        let install = prop_oneof![Just(Install::Test), Just(Install::Permanent)];
        let kind = prop_oneof![
            Just(SwapKind::Upgrade(Install::Test)),
            Just(SwapKind::Upgrade(Install::Permanent)),
            Just(SwapKind::Revert)
        ];
        let swap = (kind, any::<u16>(), any::<u16>(), 0u8..3).prop_map(|(kind, s, n, step)| Swap {
            kind,
            sectors: s,
            next: n,
            step,
        });
        let trial = prop_oneof![
            Just(Trial::None),
            Just(Trial::Installed),
            Just(Trial::Booted)
        ];
        let last = prop_oneof![
            Just(Outcome::None),
            Just(Outcome::Installed),
            (1u8..12).prop_map(|c| Outcome::Refused(Refusal::from_code(c).unwrap())),
            any::<bool>().prop_map(|rejected| Outcome::RolledBack { rejected }),
        ];
        (
            proptest::option::of(install),
            proptest::option::of(swap),
            trial,
            any::<bool>(),
            any::<bool>(),
            any::<u32>(),
            last,
        )
            .prop_map(
                |(pending, swap, trial, confirmed, rejected, counter, last)| State {
                    pending,
                    swap,
                    trial,
                    confirmed,
                    rejected,
                    counter,
                    last,
                },
            )
    }

    proptest! {
        #[test]
        fn every_state_survives_its_record(state in any_state()) {
            prop_assert_eq!(State::decode(&state.encode()), Some(state));
            let sealed = seal(state.encode());
            prop_assert_eq!(unseal(&sealed), Some(state.encode()));
        }

        /// A record cut short (its tail still erased) or with a bit flipped is not a record.
        #[test]
        fn a_damaged_record_is_not_read(state in any_state(), cut in 0usize..RECORD, bit in 0usize..128) {
            let sealed = seal(state.encode());
            let mut torn = sealed;
            torn[cut..].fill(0xff);
            prop_assert_eq!(unseal(&torn), None);
            let mut flipped = sealed;
            flipped[bit / 8] ^= 1 << (bit % 8);
            prop_assert_eq!(unseal(&flipped), None);
        }
    }
}
