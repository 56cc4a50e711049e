//! The Docker log stream reader (multiplexed frames, or raw with a TTY):
//! never panics; at most `keep` lines, none holding a line break.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, stream)) = data.split_first() else {
        return;
    };
    let tty = flags & 0x80 != 0;
    let keep = usize::from(flags & 0x7f);
    if let Ok(lines) = xtm_composer::fuzzing::read_log_lines(stream, tty, keep) {
        assert!(lines.len() <= keep, "{} lines kept of {keep}", lines.len());
        assert!(lines.iter().all(|l| !l.contains('\n')), "{lines:?}");
    }
});
