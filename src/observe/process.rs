//! The standard `process_*` figures, read from `/proc/self` (Linux only; on
//! anything else each figure is absent). The clock tick and page size come
//! from the auxiliary vector (`/proc/self/auxv`), so no libc call is needed.

/// What `/proc` says about this process; `None` = could not be read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Process {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<f64>,
    pub start_time: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
    pub threads: Option<f64>,
}

/// `AT_PAGESZ` and `AT_CLKTCK` of the auxiliary vector (native-endian u64 pairs).
fn auxv(bytes: &[u8]) -> (Option<u64>, Option<u64>) {
    let (mut page, mut tick) = (None, None);
    let words: Vec<u64> = bytes
        .chunks_exact(8)
        .filter_map(|c| c.try_into().ok().map(u64::from_ne_bytes))
        .collect();
    for pair in words.chunks_exact(2) {
        match pair[0] {
            6 => page = Some(pair[1]),
            17 => tick = Some(pair[1]),
            _ => {}
        }
    }
    (page, tick)
}

/// Fields of `/proc/self/stat` after the command name: (utime + stime ticks,
/// threads, start ticks after boot, rss pages).
fn stat(text: &str) -> Option<(u64, u64, u64, u64)> {
    let rest = text.get(text.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    // Fields 14, 15, 20, 22, 24 of proc(5), counted from field 3 here.
    Some((n(11)? + n(12)?, n(17)?, n(19)?, n(21)?))
}

fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn max_fds(limits: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Reads the figures now.
pub fn read() -> Process {
    let (page, tick) = std::fs::read("/proc/self/auxv")
        .map(|b| auxv(&b))
        .unwrap_or((None, None));
    let page = page.unwrap_or(4096) as f64;
    let tick = tick.filter(|t| *t > 0).unwrap_or(100) as f64;
    let stat = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| stat(&s));
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| boot_time(&s));
    let start_time = match (stat, boot) {
        (Some((_, _, start, _)), Some(boot)) => Some(boot as f64 + start as f64 / tick),
        _ => None,
    };
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as f64);
    Process {
        cpu_seconds: stat.map(|(cpu, ..)| cpu as f64 / tick),
        resident_bytes: stat.map(|(.., rss)| rss as f64 * page),
        start_time,
        open_fds,
        max_fds: std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| max_fds(&l)),
        threads: stat.map(|(_, threads, ..)| threads as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    fn epoch_secs(t: SystemTime) -> f64 {
        t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
    }

    #[test]
    fn stat_fields_are_read_after_a_command_name_with_spaces() {
        let line = "42 (a b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 7 0 12345 1000 300 rest";
        assert_eq!(stat(line), Some((300, 7, 12345, 300)));
    }

    #[test]
    fn this_process_has_figures() {
        let p = read();
        assert!(p.threads.unwrap() >= 1.0);
        assert!(p.resident_bytes.unwrap() > 100_000.0);
        assert!(p.open_fds.unwrap() >= 3.0);
        assert!(p.max_fds.unwrap() >= 64.0);
        let now = epoch_secs(SystemTime::now());
        let started = p.start_time.unwrap();
        assert!(
            started <= now + 1.0 && started > now - 86_400.0,
            "{started} vs {now}"
        );
        assert!(p.cpu_seconds.unwrap() >= 0.0);
    }

    #[test]
    fn max_open_files_is_the_soft_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(max_fds(limits), Some(1024.0));
    }
}
