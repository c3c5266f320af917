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
    let problem_at = |offset, len| (file.to_path_buf(), offset, len);
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
            let (file, offset, len) = problem_at(0, len);
            scanned
                .problems
                .push(Problem::TornTail { file, offset, len });
            return scanned;
        }
        HeaderCheck::Damaged | HeaderCheck::NoMagic => {
            scanned.problems.push(Problem::BadHeader {
                file: file.to_path_buf(),
            });
            0
        }
    };
    let mut pos = start;
    let mut buf = [0; FRAME_HEADER_LEN];
    while pos < len {
        if len - pos < FRAME_HEADER_LEN as u64 {
            let (file, offset, len) = problem_at(pos, len - pos);
            scanned
                .problems
                .push(Problem::TornTail { file, offset, len });
            break;
        }
        if let Err(e) = src.read_at(&mut buf, pos) {
            scanned.problems.push(unreadable(file, pos, &e));
            break;
        }
        if let Some(header) = FrameHeader::decode(&buf) {
            let end = pos + header.frame_len();
            if end > len {
                let (file, offset, len) = problem_at(pos, len - pos);
                scanned
                    .problems
                    .push(Problem::TornTail { file, offset, len });
                break;
            }
            scanned.frames.push((pos, header));
            pos = end;
            continue;
        }
        match next_header(src, pos + 1, len) {
            Ok(Some(next)) => {
                let (file, offset, len) = problem_at(pos, next - pos);
                scanned
                    .problems
                    .push(Problem::Corrupt { file, offset, len });
                pos = next;
            }
            Ok(None) => {
                let (file, offset, len) = problem_at(pos, len - pos);
                scanned
                    .problems
                    .push(Problem::TornTail { file, offset, len });
                break;
            }
            Err(e) => {
                scanned.problems.push(unreadable(file, pos, &e));
                break;
            }
        }
    }
    scanned
}

/// The offset of the first intact frame header at or after `from`.
fn next_header(src: &(impl Source + ?Sized), from: u64, len: u64) -> io::Result<Option<u64>> {
    let mut buf = vec![0; RESYNC_CHUNK];
    let mut pos = from;
    while len.saturating_sub(pos) >= FRAME_HEADER_LEN as u64 {
        let n = usize::try_from(len - pos).map_or(RESYNC_CHUNK, |left| left.min(RESYNC_CHUNK));
        src.read_at(&mut buf[..n], pos)?;
        for i in 0..=n - FRAME_HEADER_LEN {
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
