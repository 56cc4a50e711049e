//! The read-only HTTP listener (`manager.observability.listen`): std
//! `TcpListener` on its own thread, a short-lived thread per connection.
//! GET only (405 otherwise), one request per connection, a request head of at
//! most `MAX_HEAD` bytes read within `READ_DEADLINE` in total (a slowloris
//! client is cut off), at most `MAX_CONNECTIONS` at once (more are answered 503
//! at once). Answers come from published state only: no loop ever waits here.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Receiver;

use super::{board, process, render};
use crate::liveness::Loops;

/// The longest request head accepted (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// The whole head must arrive within this.
pub const READ_DEADLINE: Duration = Duration::from_secs(5);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;
/// Stack of a connection thread: formatting a few hundred kilobytes at most.
const CONNECTION_STACK: usize = 128 * 1024;

/// A parsed request: method and path (the query is ignored).
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
}

/// Why a head was refused: the status to answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    TooLarge,
    Malformed,
    Timeout,
}

/// Reads a request head from `s` within the deadline and size bound.
fn read_head(
    s: &mut impl Read,
    started: Instant,
    set_timeout: impl Fn(Duration) -> bool,
) -> Result<Request, Refusal> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let left = READ_DEADLINE.saturating_sub(started.elapsed());
        if left.is_zero() || !set_timeout(left) {
            return Err(Refusal::Timeout);
        }
        let n = match s.read(&mut buf) {
            Ok(0) => return Err(Refusal::Malformed),
            Ok(n) => n,
            Err(_) => return Err(Refusal::Timeout),
        };
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return Err(Refusal::TooLarge);
        }
    }
    parse(&head)
}

/// The request line of a head.
pub fn parse(head: &[u8]) -> Result<Request, Refusal> {
    let text = std::str::from_utf8(head).map_err(|_| Refusal::Malformed)?;
    let line = text.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::Malformed);
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Err(Refusal::Malformed);
    }
    let path = target.split('?').next().unwrap_or(target);
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
    })
}

/// One answer.
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Answer {
    fn text(status: u16, body: impl Into<String>) -> Answer {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// The answer to `req` from the board and the loops.
pub fn answer(req: &Request, loops: &Loops) -> Answer {
    if req.method != "GET" {
        return Answer::text(405, "only GET is served\n");
    }
    let either = |r: Result<String, String>| match r {
        Ok(body) => Answer::text(200, body),
        Err(body) => Answer::text(503, body),
    };
    match req.path.as_str() {
        "/healthz" => either(render::health(loops, Instant::now())),
        "/readyz" => either(render::ready(&board().snapshot())),
        "/metrics" => Answer {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: render::metrics(&board().snapshot(), Some(&process::read())),
        },
        "/status" => Answer {
            status: 200,
            content_type: "application/json",
            body: render::status(&board().snapshot(), SystemTime::now()).to_string(),
        },
        _ => Answer::text(
            404,
            "not found: try /healthz, /readyz, /metrics or /status\n",
        ),
    }
}

fn write_answer(s: &mut TcpStream, a: &Answer) {
    let allow = if a.status == 405 {
        "Allow: GET\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        a.status,
        reason(a.status),
        a.content_type,
        a.body.len()
    );
    let _ = s.set_write_timeout(Some(READ_DEADLINE));
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(a.body.as_bytes());
    let _ = s.flush();
}

fn serve(mut s: TcpStream, loops: &Loops) {
    let started = Instant::now();
    let reader = s.try_clone();
    let head = match reader {
        Ok(mut r) => {
            let timeout = |d: Duration| s.set_read_timeout(Some(d)).is_ok();
            read_head(&mut r, started, timeout)
        }
        Err(_) => Err(Refusal::Malformed),
    };
    let a = match head {
        Ok(req) => answer(&req, loops),
        Err(Refusal::TooLarge) => Answer::text(431, "request head too large\n"),
        Err(Refusal::Malformed) => Answer::text(400, "bad request\n"),
        Err(Refusal::Timeout) => Answer::text(408, "request not received in time\n"),
    };
    write_answer(&mut s, &a);
    close(s);
}

/// Closes after the answer without losing it: unread input at close would
/// make the kernel reset the connection, and the client could lose the
/// answer (an oversized request, a slow client still sending). So the input
/// is drained, bounded in bytes and time, after our side is shut.
fn close(mut s: TcpStream) {
    let _ = s.shutdown(std::net::Shutdown::Write);
    let _ = s.set_read_timeout(Some(DRAIN_FOR));
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let mut drained = 0;
    while start.elapsed() < DRAIN_FOR && drained < DRAIN_MAX {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// At most this long and this much input is drained after an answer.
const DRAIN_FOR: Duration = Duration::from_secs(1);
const DRAIN_MAX: usize = 1024 * 1024;

/// Binds `addr`.
///
/// # Errors
/// The address is in use or not ours (the message names it).
pub fn bind(addr: &str) -> Result<TcpListener, String> {
    let parsed: SocketAddr = addr
        .parse()
        .map_err(|e| format!("manager.observability.listen = {addr}: {e}"))?;
    TcpListener::bind(parsed)
        .map_err(|e| format!("manager.observability.listen = {addr}: cannot listen: {e}"))
}

/// Serves `listener` on its own thread until `shutdown` closes.
///
/// # Errors
/// The thread could not be spawned.
pub fn spawn(
    listener: TcpListener,
    loops: Loops,
    shutdown: Receiver<()>,
) -> std::io::Result<JoinHandle<()>> {
    let addr = listener.local_addr().ok();
    // Wake the blocking accept when the broadcast closes.
    if let Some(addr) = addr {
        let stop = shutdown.clone();
        std::thread::Builder::new()
            .name("observe-stop".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = stop.recv();
                let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
            })?;
    }
    std::thread::Builder::new()
        .name("observe".into())
        .stack_size(CONNECTION_STACK)
        .spawn(move || run(&listener, &loops, &shutdown))
}

fn run(listener: &TcpListener, loops: &Loops, shutdown: &Receiver<()>) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if matches!(
            shutdown.try_recv(),
            Err(crossbeam_channel::TryRecvError::Disconnected)
        ) {
            break;
        }
        let Ok(mut s) = conn else { continue };
        if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            // Never wait here: read what already arrived (so closing does not
            // reset the answer away), answer, close.
            let _ = s.set_nonblocking(true);
            let mut buf = [0u8; MAX_HEAD];
            let _ = s.read(&mut buf);
            write_answer(&mut s, &Answer::text(503, "too many connections\n"));
            let _ = s.shutdown(std::net::Shutdown::Write);
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let (a, l) = (Arc::clone(&active), loops.clone());
        let spawned = std::thread::Builder::new()
            .name("observe-conn".into())
            .stack_size(CONNECTION_STACK)
            .spawn(move || {
                serve(s, &l);
                a.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
    log::info!("observability listener stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_parsed_and_bad_ones_refused() {
        let r = parse(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/metrics"));
        assert_eq!(parse(b"GET\r\n\r\n"), Err(Refusal::Malformed));
        assert_eq!(
            parse(b"GET metrics HTTP/1.1\r\n\r\n"),
            Err(Refusal::Malformed)
        );
        assert_eq!(parse(b"GET / SPDY\r\n\r\n"), Err(Refusal::Malformed));
    }

    #[test]
    fn anything_but_get_is_405_and_unknown_paths_404() {
        let loops = Loops::default();
        let post = Request {
            method: "POST".into(),
            path: "/metrics".into(),
        };
        assert_eq!(answer(&post, &loops).status, 405);
        let get = Request {
            method: "GET".into(),
            path: "/nope".into(),
        };
        assert_eq!(answer(&get, &loops).status, 404);
        let get = Request {
            method: "GET".into(),
            path: "/healthz".into(),
        };
        assert_eq!(answer(&get, &loops).status, 200);
    }

    #[test]
    fn an_oversized_head_is_refused_without_reading_it_all() {
        let big = vec![b'a'; 100_000];
        let mut r: &[u8] = &big;
        assert_eq!(
            read_head(&mut r, Instant::now(), |_| true),
            Err(Refusal::TooLarge)
        );
        assert!(r.len() > 80_000, "read on after the limit");
    }
}
