//! The byte layout of segment headers and frame headers (described in the module documentation
//! of [`super`]), and segment file names. Everything here is pure: no I/O.

/// First eight bytes of every segment file. The high first byte and the trailing newline catch
/// files that went through a text-mode transfer, as in PNG.
pub const SEGMENT_MAGIC: [u8; 8] = *b"\x89KVMREC\n";
/// The format version this code writes. Version 2 added delta frames ([`FLAG_DELTA`]).
pub const FORMAT_VERSION: u16 = 2;
/// The oldest version this code reads: version 1 is version 2 without delta frames.
pub const OLDEST_READABLE_VERSION: u16 = 1;
/// Length of a segment header (the same in versions 1 and 2).
pub const SEGMENT_HEADER_LEN: usize = 32;

/// Sync marker opening every frame header; a reader looks for it to find the next frame after
/// damage. Chosen to be neither ASCII text nor the zstd frame magic (`28 B5 2F FD`).
pub const FRAME_MAGIC: [u8; 4] = [0xE2, 0x6B, 0x76, 0x46];
/// Length of a frame header; the stored payload follows it.
pub const FRAME_HEADER_LEN: usize = 32;
/// Frame flag: the stored payload is one zstd frame.
pub const FLAG_ZSTD: u16 = 1;
/// Frame flag, always with [`FLAG_ZSTD`]: the stored payload is a [`KeyRef`] followed by one
/// zstd frame compressed with the raw payload of that key frame as its dictionary.
pub const FLAG_DELTA: u16 = 2;

/// Which key frame a delta frame is compressed against: the first [`KeyRef::LEN`] bytes of its
/// stored payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRef {
    /// Offset of the key frame's header in the same segment.
    pub offset: u64,
    /// The payload CRC-32 in the key frame's header: a frame that is not the key frame but sits
    /// at its offset (after damage shifted the bytes) is not taken for it.
    pub payload_crc: u32,
}

impl KeyRef {
    pub const LEN: usize = 12;

    #[must_use]
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0; Self::LEN];
        b[..8].copy_from_slice(&self.offset.to_le_bytes());
        b[8..].copy_from_slice(&self.payload_crc.to_le_bytes());
        b
    }

    /// The reference opening `stored`, the stored payload of a delta frame (which its header
    /// guarantees is long enough), or `None` if it is shorter.
    #[must_use]
    pub fn decode(stored: &[u8]) -> Option<Self> {
        (stored.len() >= Self::LEN).then(|| Self {
            offset: le_u64(stored, 0),
            payload_crc: le_u32(stored, 8),
        })
    }
}
/// Largest payload (stored or raw) a frame may carry. A header announcing more is damaged, so a
/// reader never allocates more than this for one frame.
pub const MAX_PAYLOAD: usize = 64 << 20;

/// File name suffix of segments and the customary suffix of standalone recordings.
pub const SEGMENT_SUFFIX: &str = ".kvmrec";
const SEGMENT_PREFIX: &str = "segment-";
/// Digits of the creation time in a segment name: enough for any u64, so names sort by time.
const NAME_DIGITS: usize = 20;

/// A decoded segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub version: u16,
    /// Where the first frame starts.
    pub header_len: u16,
    /// Unix time in ns of the segment's first frame.
    pub created_ns: u64,
}

/// What the first bytes of a segment say about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderCheck {
    Valid(SegmentHeader),
    /// Intact (checksum holds) but written by a newer, incompatible format.
    Unsupported(u16),
    /// The magic is there but the rest does not hold: a damaged recording.
    Damaged,
    /// Not even the magic: possibly not a recording at all.
    NoMagic,
}

#[must_use]
pub fn encode_segment_header(created_ns: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    #[expect(clippy::cast_possible_truncation, reason = "32 fits in u16")]
    h[10..12].copy_from_slice(&(SEGMENT_HEADER_LEN as u16).to_le_bytes());
    // 12..16 flags and 24..28 reserved stay zero.
    h[16..24].copy_from_slice(&created_ns.to_le_bytes());
    let crc = crc32fast::hash(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks the first bytes of a segment (fewer than [`SEGMENT_HEADER_LEN`] if the file is short).
#[must_use]
pub fn check_segment_header(bytes: &[u8]) -> HeaderCheck {
    if bytes.len() < SEGMENT_MAGIC.len() || bytes[..8] != SEGMENT_MAGIC {
        return HeaderCheck::NoMagic;
    }
    if bytes.len() < SEGMENT_HEADER_LEN || crc32fast::hash(&bytes[..28]) != le_u32(bytes, 28) {
        return HeaderCheck::Damaged;
    }
    let version = le_u16(bytes, 8);
    let header_len = le_u16(bytes, 10);
    if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version) {
        return HeaderCheck::Unsupported(version);
    }
    if usize::from(header_len) < SEGMENT_HEADER_LEN {
        return HeaderCheck::Damaged;
    }
    HeaderCheck::Valid(SegmentHeader {
        version,
        header_len,
        created_ns: le_u64(bytes, 16),
    })
}

/// A decoded, checksum-verified frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub time_ns: u64,
    pub kind: u16,
    pub flags: u16,
    pub stored_len: u32,
    pub raw_len: u32,
    pub payload_crc: u32,
}

impl FrameHeader {
    #[must_use]
    pub fn encode(&self) -> [u8; FRAME_HEADER_LEN] {
        let mut h = [0; FRAME_HEADER_LEN];
        h[0..4].copy_from_slice(&FRAME_MAGIC);
        h[4..12].copy_from_slice(&self.time_ns.to_le_bytes());
        h[12..14].copy_from_slice(&self.kind.to_le_bytes());
        h[14..16].copy_from_slice(&self.flags.to_le_bytes());
        h[16..20].copy_from_slice(&self.stored_len.to_le_bytes());
        h[20..24].copy_from_slice(&self.raw_len.to_le_bytes());
        h[24..28].copy_from_slice(&self.payload_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..28]);
        h[28..32].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Decodes a header, or `None` if the bytes are not an intact frame header: wrong marker,
    /// checksum mismatch, unknown flags, or lengths no writer produces.
    #[must_use]
    pub fn decode(bytes: &[u8; FRAME_HEADER_LEN]) -> Option<Self> {
        if bytes[0..4] != FRAME_MAGIC || crc32fast::hash(&bytes[..28]) != le_u32(bytes, 28) {
            return None;
        }
        let header = Self {
            time_ns: le_u64(bytes, 4),
            kind: le_u16(bytes, 12),
            flags: le_u16(bytes, 14),
            stored_len: le_u32(bytes, 16),
            raw_len: le_u32(bytes, 20),
            payload_crc: le_u32(bytes, 24),
        };
        let flags_hold = match header.flags {
            0 => header.raw_len == header.stored_len,
            FLAG_ZSTD => true,
            DELTA => header.stored_len as usize >= KeyRef::LEN,
            _ => false,
        };
        let plausible = flags_hold
            && header.stored_len as usize <= MAX_PAYLOAD
            && header.raw_len as usize <= MAX_PAYLOAD;
        plausible.then_some(header)
    }

    /// Whether the payload is compressed against a key frame (see [`FLAG_DELTA`]).
    #[must_use]
    pub fn is_delta(&self) -> bool {
        self.flags & FLAG_DELTA != 0
    }

    /// Bytes the whole frame occupies on disk.
    #[must_use]
    pub fn frame_len(&self) -> u64 {
        FRAME_HEADER_LEN as u64 + u64::from(self.stored_len)
    }
}

/// The flags of a delta frame.
const DELTA: u16 = FLAG_ZSTD | FLAG_DELTA;

/// The file name of the segment created at `created_ns`.
#[must_use]
pub fn segment_name(created_ns: u64) -> String {
    format!("{SEGMENT_PREFIX}{created_ns:0NAME_DIGITS$}{SEGMENT_SUFFIX}")
}

/// The creation time encoded in a segment file name, or `None` for any other name.
#[must_use]
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name
        .strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut v = [0; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> FrameHeader {
        FrameHeader {
            time_ns: 1_700_000_000_123_456_789,
            kind: 7,
            flags: FLAG_ZSTD,
            stored_len: 100,
            raw_len: 400,
            payload_crc: 0xDEAD_BEEF,
        }
    }

    #[test]
    fn frame_header_round_trips_and_any_flipped_bit_is_caught() {
        let delta = FrameHeader {
            flags: FLAG_ZSTD | FLAG_DELTA,
            ..header()
        };
        assert_eq!(FrameHeader::decode(&delta.encode()), Some(delta));
        assert!(delta.is_delta() && !header().is_delta());
        let bytes = header().encode();
        assert_eq!(FrameHeader::decode(&bytes), Some(header()));
        for bit in 0..FRAME_HEADER_LEN * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(FrameHeader::decode(&damaged), None, "bit {bit}");
        }
    }

    #[test]
    fn frame_header_layout_is_the_documented_one() {
        let bytes = header().encode();
        assert_eq!(bytes[0..4], FRAME_MAGIC);
        assert_eq!(bytes[4..12], 1_700_000_000_123_456_789_u64.to_le_bytes());
        assert_eq!(bytes[12..14], [7, 0]);
        assert_eq!(bytes[14..16], [1, 0]);
        assert_eq!(bytes[16..20], 100_u32.to_le_bytes());
        assert_eq!(bytes[20..24], 400_u32.to_le_bytes());
        assert_eq!(bytes[24..28], 0xDEAD_BEEF_u32.to_le_bytes());
        assert_eq!(bytes[28..32], crc32fast::hash(&bytes[..28]).to_le_bytes());
    }

    #[test]
    fn implausible_headers_with_valid_checksums_are_rejected() {
        let too_long = FrameHeader {
            stored_len: u32::try_from(MAX_PAYLOAD + 1).unwrap(),
            ..header()
        };
        let unknown_flag = FrameHeader {
            flags: 4 | FLAG_ZSTD,
            ..header()
        };
        let delta_without_zstd = FrameHeader {
            flags: FLAG_DELTA,
            ..header()
        };
        let delta_without_key_offset = FrameHeader {
            flags: FLAG_ZSTD | FLAG_DELTA,
            stored_len: 11,
            ..header()
        };
        let raw_mismatch = FrameHeader {
            flags: 0,
            ..header()
        };
        for h in [
            too_long,
            unknown_flag,
            delta_without_zstd,
            delta_without_key_offset,
            raw_mismatch,
        ] {
            assert_eq!(FrameHeader::decode(&h.encode()), None, "{h:?}");
        }
    }

    #[test]
    fn segment_header_checks() {
        let h = encode_segment_header(42);
        assert_eq!(
            check_segment_header(&h),
            HeaderCheck::Valid(SegmentHeader {
                version: 2,
                header_len: 32,
                created_ns: 42
            })
        );
        let mut older = h;
        older[8] = 1;
        let crc = crc32fast::hash(&older[..28]);
        older[28..32].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            check_segment_header(&older),
            HeaderCheck::Valid(SegmentHeader { version: 1, .. })
        ));
        assert_eq!(check_segment_header(&h[..20]), HeaderCheck::Damaged);
        assert_eq!(check_segment_header(b"hello"), HeaderCheck::NoMagic);
        let mut damaged = h;
        damaged[17] ^= 1;
        assert_eq!(check_segment_header(&damaged), HeaderCheck::Damaged);
        let mut newer = h;
        newer[8] = 3;
        let crc = crc32fast::hash(&newer[..28]);
        newer[28..32].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(check_segment_header(&newer), HeaderCheck::Unsupported(3));
    }

    #[test]
    fn segment_names_sort_by_time_and_parse_back() {
        let names: Vec<_> = [5, 1_000, u64::MAX].map(segment_name).into();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert_eq!(names[0], "segment-00000000000000000005.kvmrec");
        assert_eq!(parse_segment_name(&names[2]), Some(u64::MAX));
        for other in [
            "segment-5.kvmrec",
            "segment-0000000000000000000x.kvmrec",
            "segment-00000000000000000005.kvmrec.partial",
            "notes.txt",
        ] {
            assert_eq!(parse_segment_name(other), None, "{other}");
        }
    }
}
