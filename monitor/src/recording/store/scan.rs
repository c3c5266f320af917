//! Walking one segment by its frame headers: the index of its intact frames, and the damage
//! between them. Payloads are skipped, not read.
use std::{fs::File, io, os::unix::fs::FileExt as _, path::Path};

use super::{
    Problem,
    format::{
        FRAME_HEADER_LEN, FRAME_MAGIC, FrameHeader, HeaderCheck, SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
        check_segment_header,
    },
};

/// Bytes read at a time while searching for the next frame after damage.
const RESYNC_CHUNK: usize = 64 << 10;

/// Positional reads from a segment, on disk or in memory.
pub(super) trait Source {
    /// Fills `buf` from `offset`, or fails (also when the source ends first).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl Source for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read_exact_at(buf, offset)
    }
}

impl Source for Vec<u8> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let bytes = usize::try_from(offset)
            .ok()
            .and_then(|start| self.get(start..start.checked_add(buf.len())?))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

/// One segment's intact frames and its damage.
pub(super) struct Scanned {
    pub header: HeaderCheck,
    /// Offset and header of each intact frame, in file order.
    pub frames: Vec<(u64, FrameHeader)>,
    pub problems: Vec<Problem>,
}

/// Scans the first `len` bytes of a segment (its length when the reader opened it: a frame a
/// live writer appends later is not seen, one it is appending is a torn tail).
pub(super) fn scan(src: &(impl Source + ?Sized), len: u64, file: &Path) -> Scanned {
    let mut scanned = Scanned {
        header: HeaderCheck::NoMagic,
        frames: Vec::new(),
        problems: Vec::new(),
    };
    let head_len = usize::try_from(len.min(SEGMENT_HEADER_LEN as u64)).unwrap_or(0);
    let mut head = [0; SEGMENT_HEADER_LEN];
    if let Err(e) = src.read_at(&mut head[..head_len], 0) {
        scanned.problems.push(unreadable(file, 0, &e));
        return scanned;
    }
    scanned.header = check_segment_header(&head[..head_len]);
    let start = match scanned.header {
        HeaderCheck::Valid(h) => u64::from(h.header_len),
        HeaderCheck::Unsupported(version) => {
            scanned.problems.push(Problem::UnsupportedVersion {
                file: file.to_path_buf(),
                version,
            });
            return scanned;
        }
        // A writer stopped while creating the segment: its header is cut short.
        _ if head_len < SEGMENT_HEADER_LEN
            && head[..head_len.min(SEGMENT_MAGIC.len())]
                == SEGMENT_MAGIC[..head_len.min(SEGMENT_MAGIC.len())] =>
        {
            scanned.problems.push(Problem::TornTail {
                file: file.to_path_buf(),
                offset: 0,
                len,
            });
            return scanned;
        }
        HeaderCheck::Damaged | HeaderCheck::NoMagic => {
            scanned.problems.push(Problem::BadHeader {
                file: file.to_path_buf(),
            });
            0
        }
    };
    walk(
        src,
        start,
        len,
        file,
        &mut scanned.frames,
        &mut scanned.problems,
    );
    scanned
}

/// Walks frames from `start` to `end`, adding intact ones to `frames` and damage to `problems`.
pub(super) fn walk(
    src: &(impl Source + ?Sized),
    start: u64,
    end: u64,
    file: &Path,
    frames: &mut Vec<(u64, FrameHeader)>,
    problems: &mut Vec<Problem>,
) {
    let mut pos = start;
    let mut buf = [0; FRAME_HEADER_LEN];
    while pos < end {
        let header = if end - pos < FRAME_HEADER_LEN as u64 {
            None
        } else if let Err(e) = src.read_at(&mut buf, pos) {
            problems.push(unreadable(file, pos, &e));
            return;
        } else {
            FrameHeader::decode(&buf)
        };
        if let Some(header) = header
            && pos + header.frame_len() <= end
        {
            frames.push((pos, header));
            pos += header.frame_len();
            continue;
        }
        let file = file.to_path_buf();
        match resync(src, frames, pos, end) {
            Ok(Some((offset, next))) => {
                let len = next - offset;
                problems.push(Problem::Corrupt { file, offset, len });
                pos = next;
            }
            Ok(None) => {
                let len = end - pos;
                problems.push(Problem::TornTail {
                    file,
                    offset: pos,
                    len,
                });
                return;
            }
            Err(e) => {
                problems.push(unreadable(&file, pos, &e));
                return;
            }
        }
    }
}

/// Finds where intact frames resume when there is none at `pos`: returns the start of the
/// damaged bytes and the next intact frame header, or `None` if there is none before the end.
///
/// The damage may have begun in the frame before `pos`: bytes inserted into or removed from its
/// payload leave its header intact but its length wrong, so the walk lands off the next frame.
/// So if a header lies inside that frame's payload and the payload fails its checksum, the
/// frame is dropped and the search resumes at that header.
fn resync(
    src: &(impl Source + ?Sized),
    frames: &mut Vec<(u64, FrameHeader)>,
    pos: u64,
    len: u64,
) -> io::Result<Option<(u64, u64)>> {
    if let Some(&(prev, header)) = frames.last()
        && prev + header.frame_len() == pos
    {
        let payload = prev + FRAME_HEADER_LEN as u64;
        if let Some(inside) = next_header(src, payload, pos, len)? {
            let mut stored = vec![0; header.stored_len as usize];
            src.read_at(&mut stored, payload)?;
            if crc32fast::hash(&stored) != header.payload_crc {
                frames.pop();
                return Ok(Some((prev, inside)));
            }
        }
    }
    Ok(next_header(src, pos + 1, len, len)?.map(|next| (pos, next)))
}

/// The offset of the first intact frame header starting in `from..before` (and ending by `len`).
fn next_header(
    src: &(impl Source + ?Sized),
    from: u64,
    before: u64,
    len: u64,
) -> io::Result<Option<u64>> {
    let left = usize::try_from(len.saturating_sub(from)).unwrap_or(usize::MAX);
    let mut buf = vec![0; left.min(RESYNC_CHUNK)];
    let mut pos = from;
    while pos < before && len.saturating_sub(pos) >= FRAME_HEADER_LEN as u64 {
        let n = usize::try_from(len - pos).map_or(RESYNC_CHUNK, |left| left.min(RESYNC_CHUNK));
        src.read_at(&mut buf[..n], pos)?;
        for i in 0..=n - FRAME_HEADER_LEN {
            if pos + i as u64 >= before {
                return Ok(None);
            }
            if buf[i..i + FRAME_MAGIC.len()] != FRAME_MAGIC {
                continue;
            }
            let candidate: &[u8; FRAME_HEADER_LEN] = buf[i..i + FRAME_HEADER_LEN]
                .try_into()
                .expect("slice of header length");
            if FrameHeader::decode(candidate).is_some() {
                return Ok(Some(pos + i as u64));
            }
        }
        if n < RESYNC_CHUNK {
            break;
        }
        // The next chunk repeats the last bytes so a header across the boundary is seen whole.
        pos += (n - (FRAME_HEADER_LEN - 1)) as u64;
    }
    Ok(None)
}

fn unreadable(file: &Path, offset: u64, e: &io::Error) -> Problem {
    Problem::Unreadable {
        file: file.to_path_buf(),
        error: format!("reading at offset {offset}: {e}"),
    }
}
