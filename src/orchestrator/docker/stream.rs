//! The two byte formats the engine speaks besides JSON: the log stream (raw for
//! TTY containers, else multiplexed in 8-byte-header frames) and the tar archive
//! of `PUT /containers/{id}/archive`. Pure functions over `Read` / bytes, no I/O of
//! their own. Invariant: output lines carry no frame header and no line ending,
//! and both line length and total bytes are bounded (CONTRACT §6.1, D6).

use std::collections::VecDeque;
use std::io::{self, Read};

/// A longer line is cut: log snapshots are for people, not archives.
pub(crate) const MAX_LINE_BYTES: usize = 16 * 1024;
/// At most this much of a log answer is read, whatever `tail` asked for.
pub(crate) const MAX_LOG_BYTES: u64 = 8 * 1024 * 1024;

/// The last `keep` lines of partial-line buffers per stream (stdin, stdout, stderr).
struct Lines {
    done: VecDeque<String>,
    keep: usize,
    partial: [Vec<u8>; 3],
}

impl Lines {
    fn new(keep: usize) -> Self {
        Lines {
            done: VecDeque::new(),
            keep,
            partial: [Vec::new(), Vec::new(), Vec::new()],
        }
    }

    fn feed(&mut self, stream: usize, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (piece, ended, rest) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..i], true, &bytes[i + 1..]),
                None => (bytes, false, &[][..]),
            };
            let buf = &mut self.partial[stream];
            let room = MAX_LINE_BYTES.saturating_sub(buf.len());
            buf.extend_from_slice(&piece[..piece.len().min(room)]);
            if ended {
                let line = std::mem::take(&mut self.partial[stream]);
                self.emit(line);
            }
            bytes = rest;
        }
    }

    fn emit(&mut self, mut line: Vec<u8>) {
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        self.done
            .push_back(String::from_utf8_lossy(&line).into_owned());
        if self.done.len() > self.keep {
            self.done.pop_front();
        }
    }

    /// A last line without `\n` still counts (stdout's first, then stderr's).
    fn finish(mut self) -> Vec<String> {
        for stream in [1, 2, 0] {
            let line = std::mem::take(&mut self.partial[stream]);
            if !line.is_empty() {
                self.emit(line);
            }
        }
        self.done.into()
    }
}

/// Fills `buf` unless the reader ends first; returns how many bytes were read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads a log answer into at most `keep` lines. `tty` selects the raw format;
/// otherwise frames are `[stream, 0, 0, 0, len (u32 BE)]` + payload. Frames and
/// lines may be split anywhere across reads; a stream cut mid-frame keeps what came.
///
/// # Errors
/// A read error, or a frame header naming a stream other than 0, 1, 2 (the
/// answer is not multiplexed).
pub(crate) fn read_log_lines(reader: impl Read, tty: bool, keep: usize) -> io::Result<Vec<String>> {
    let mut reader = reader.take(MAX_LOG_BYTES);
    let mut lines = Lines::new(keep);
    let mut chunk = vec![0u8; 8 * 1024];
    if tty {
        loop {
            let n = read_full(&mut reader, &mut chunk)?;
            lines.feed(1, &chunk[..n]);
            if n < chunk.len() {
                return Ok(lines.finish());
            }
        }
    }
    loop {
        let mut header = [0u8; 8];
        if read_full(&mut reader, &mut header)? < header.len() {
            return Ok(lines.finish());
        }
        let stream = usize::from(header[0]);
        if stream > 2 || header[1..4] != [0, 0, 0] {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a multiplexed log stream",
            ));
        }
        let mut left = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        while left > 0 {
            let want = left.min(chunk.len());
            let n = read_full(&mut reader, &mut chunk[..want])?;
            lines.feed(stream, &chunk[..n]);
            if n < want {
                return Ok(lines.finish());
            }
            left -= n;
        }
    }
}

const BLOCK: usize = 512;

/// Writes `value` as zero-padded octal of `field.len() - 1` digits plus NUL.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    let text = &text.as_bytes()[text.len().saturating_sub(digits)..];
    field[..digits].copy_from_slice(text);
    field[digits] = 0;
}

/// A ustar archive holding one regular file (owner root, mtime 0) — all that
/// `PUT /containers/{id}/archive` needs; missing parent directories of `path`
/// are created by the engine. `None` when `path` does not fit the 100-byte name
/// field or the content exceeds the 8 GiB size field.
pub(crate) fn tar_one_file(path: &str, mode: u32, content: &[u8]) -> Option<Vec<u8>> {
    if path.is_empty() || path.len() > 100 || content.len() as u64 >= 8 << 30 {
        return None;
    }
    let mut header = [0u8; BLOCK];
    header[..path.len()].copy_from_slice(path.as_bytes());
    octal(&mut header[100..108], u64::from(mode & 0o7777));
    octal(&mut header[108..116], 0); // uid
    octal(&mut header[116..124], 0); // gid
    octal(&mut header[124..136], content.len() as u64);
    octal(&mut header[136..148], 0); // mtime
    header[148..156].fill(b' '); // checksum is computed over spaces here
    header[156] = b'0'; // regular file
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    // devmajor / devminor stay empty: they mean nothing for a regular file.
    let sum: u64 = header.iter().map(|&b| u64::from(b)).sum();
    octal(&mut header[148..155], sum);
    let padded = content.len().div_ceil(BLOCK) * BLOCK;
    let mut out = Vec::with_capacity(BLOCK + padded + 2 * BLOCK);
    out.extend_from_slice(&header);
    out.extend_from_slice(content);
    out.resize(BLOCK + padded + 2 * BLOCK, 0);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out at most `step` bytes per read, to split frames anywhere.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn frame(stream: u8, payload: &str) -> Vec<u8> {
        let mut f = vec![stream, 0, 0, 0];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload.as_bytes());
        f
    }

    fn mux(frames: &[(u8, &str)]) -> Vec<u8> {
        frames.iter().flat_map(|(s, p)| frame(*s, p)).collect()
    }

    #[test]
    fn frames_split_across_reads_give_the_same_lines() {
        let data = mux(&[
            (1, "tick 1 out\n"),
            (2, "tick 1 err\n"),
            (1, "tick 2 out\n"),
        ]);
        for step in [1, 3, 7, 8, 9, 1000] {
            let lines = read_log_lines(Trickle { data: &data, step }, false, 100).unwrap();
            assert_eq!(
                lines,
                ["tick 1 out", "tick 1 err", "tick 2 out"],
                "step {step}"
            );
        }
    }

    #[test]
    fn interleaved_partial_lines_stay_on_their_own_stream() {
        let data = mux(&[(1, "out-a"), (2, "err-a\nerr-"), (1, "-b\n"), (2, "b\n")]);
        let lines = read_log_lines(&data[..], false, 100).unwrap();
        assert_eq!(lines, ["err-a", "out-a-b", "err-b"]);
    }

    #[test]
    fn a_partial_trailing_line_is_kept_without_newline() {
        let data = mux(&[(1, "one\ntwo"), (2, "late")]);
        let lines = read_log_lines(&data[..], false, 100).unwrap();
        assert_eq!(lines, ["one", "two", "late"]);
    }

    #[test]
    fn a_stream_cut_mid_frame_keeps_what_came() {
        let mut data = mux(&[(1, "whole\n"), (1, "cut short\n")]);
        data.truncate(data.len() - 4);
        let lines = read_log_lines(&data[..], false, 100).unwrap();
        assert_eq!(lines, ["whole", "cut sh"]);
    }

    #[test]
    fn tty_output_is_read_raw_with_crlf_removed() {
        let raw = b"out1\r\nerr1\r\n\x01not a header\r\nlast";
        let lines = read_log_lines(Trickle { data: raw, step: 2 }, true, 100).unwrap();
        assert_eq!(lines, ["out1", "err1", "\u{1}not a header", "last"]);
    }

    #[test]
    fn raw_text_read_as_multiplexed_is_an_error() {
        let err = read_log_lines(&b"hello world\n"[..], false, 100).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn only_the_last_lines_are_kept() {
        let data = mux(&[(1, "1\n2\n3\n"), (2, "4\n5\n")]);
        assert_eq!(read_log_lines(&data[..], false, 2).unwrap(), ["4", "5"]);
    }

    #[test]
    fn long_lines_are_cut_and_invalid_utf8_is_replaced() {
        let long = "x".repeat(MAX_LINE_BYTES + 100) + "\n";
        let mut data = mux(&[(1, &long)]);
        data.extend(frame(2, "ok"));
        data.extend([1, 0, 0, 0, 0, 0, 0, 3, 0xff, b'a', b'\n']);
        let lines = read_log_lines(&data[..], false, 10).unwrap();
        assert_eq!(lines[0].len(), MAX_LINE_BYTES);
        assert_eq!(lines[1], "\u{fffd}a");
        assert_eq!(lines[2], "ok");
    }

    #[test]
    fn an_empty_answer_has_no_lines() {
        assert!(read_log_lines(&b""[..], false, 10).unwrap().is_empty());
        assert!(read_log_lines(&b""[..], true, 10).unwrap().is_empty());
    }

    /// The fixture was written by Python's `tarfile` (USTAR, same fields);
    /// it pads to a 10 KiB record, which the engine does not need.
    #[test]
    fn the_archive_matches_python_tarfile_byte_for_byte() {
        let fixture = include_bytes!("../../../tests/fixtures/docker/proxy-ca.tar");
        let content = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let ours = tar_one_file("etc/ssl/certs/xtm-proxy-ca.crt", 0o444, content).unwrap();
        assert_eq!(ours.len(), 512 + 512 + 1024);
        assert_eq!(&fixture[..ours.len()], &ours[..]);
        assert!(fixture[ours.len()..].iter().all(|&b| b == 0));
    }

    #[test]
    fn archive_sizes_are_block_aligned_and_names_bounded() {
        assert_eq!(tar_one_file("a", 0o644, &[]).unwrap().len(), 512 + 1024);
        assert_eq!(
            tar_one_file("a", 0o644, &[1; 512]).unwrap().len(),
            1024 + 1024
        );
        assert_eq!(
            tar_one_file("a", 0o644, &[1; 513]).unwrap().len(),
            1536 + 1024
        );
        assert!(tar_one_file(&"n".repeat(101), 0o644, b"x").is_none());
        assert!(tar_one_file("", 0o644, b"x").is_none());
    }
}
