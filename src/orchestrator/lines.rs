//! Change streams (Docker engine events, Kubernetes watch events) read one
//! bounded line at a time: a peer that never sends a newline costs at most the
//! bound, not memory until a timeout, and the stream is then dropped.

use std::io::{BufRead, Read};

use crate::orchestrator::Error;

/// The lines of a stream, each at most `max` bytes.
pub(crate) struct Lines<R> {
    reader: R,
    line: Vec<u8>,
    max: u64,
    op: &'static str,
}

impl<R: BufRead> Lines<R> {
    /// Lines of `reader`; errors name `op`.
    pub(crate) fn new(reader: R, max: u64, op: &'static str) -> Lines<R> {
        Lines {
            reader,
            line: Vec::new(),
            max,
            op,
        }
    }

    /// The next line that is not blank, without its newline; `None` at the end.
    ///
    /// # Errors
    /// A broken stream (`Transport`), a line longer than the bound (`Decode`).
    pub(crate) fn next_line(&mut self) -> Result<Option<&[u8]>, Error> {
        loop {
            self.line.clear();
            let n = (&mut self.reader)
                .take(self.max)
                .read_until(b'\n', &mut self.line)
                .map_err(|e| Error::Transport {
                    op: self.op,
                    detail: e.to_string(),
                })?;
            if n == 0 {
                return Ok(None);
            }
            if self.line.last() != Some(&b'\n') && n as u64 >= self.max {
                return Err(Error::Decode {
                    op: self.op,
                    detail: format!("a line longer than {} bytes in the stream", self.max),
                });
            }
            if !self.line.iter().all(u8::is_ascii_whitespace) {
                let end = self.line.len() - usize::from(self.line.last() == Some(&b'\n'));
                return Ok(Some(&self.line[..end]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_skip_blanks_end_cleanly_and_refuse_an_endless_one() {
        let mut l = Lines::new(&b"{\"a\":1}\n\n  \n{\"b\":2}"[..], 16, "read");
        assert_eq!(l.next_line().unwrap(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(l.next_line().unwrap(), Some(&b"{\"b\":2}"[..]));
        assert_eq!(l.next_line().unwrap(), None);
        let mut long = Lines::new(&[b'x'; 64][..], 16, "read");
        assert!(matches!(long.next_line(), Err(Error::Decode { .. })));
    }
}
