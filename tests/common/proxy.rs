//! A recording HTTP CONNECT proxy on 127.0.0.1: it answers 200 to every CONNECT,
//! tunnels the bytes both ways, and remembers each CONNECT target and whether a
//! `Proxy-Authorization` header came with it.

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use super::http1;

/// One CONNECT the proxy saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    pub target: String,
    pub proxy_authorization: Option<String>,
}

/// A running proxy; it lives until the test process ends.
pub struct ConnectProxy {
    addr: SocketAddr,
    tunnels: Arc<Mutex<Vec<Tunnel>>>,
}

impl ConnectProxy {
    /// Starts the proxy on a free loopback port.
    pub fn start() -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let tunnels = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&tunnels);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = Arc::clone(&seen);
                thread::spawn(move || {
                    let _ = tunnel(stream, &seen);
                });
            }
        });
        ConnectProxy { addr, tunnels }
    }

    /// `http://127.0.0.1:PORT`, or with `user:password@` when given.
    pub fn url(&self, credentials: Option<&str>) -> String {
        match credentials {
            Some(c) => format!("http://{c}@{}", self.addr),
            None => format!("http://{}", self.addr),
        }
    }

    /// Every CONNECT so far.
    pub fn tunnels(&self) -> Vec<Tunnel> {
        self.tunnels.lock().unwrap().clone()
    }
}

fn tunnel(mut client: TcpStream, seen: &Mutex<Vec<Tunnel>>) -> io::Result<()> {
    let req = http1::read_request(&mut client)?;
    seen.lock().unwrap().push(Tunnel {
        target: req.target.clone(),
        proxy_authorization: req.header("proxy-authorization").map(String::from),
    });
    if req.method != "CONNECT" {
        return http1::write_response(&mut client, 405, "text/plain", b"CONNECT only");
    }
    let upstream = TcpStream::connect(&req.target)?;
    client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    let (mut c_read, mut u_write) = (client.try_clone()?, upstream.try_clone()?);
    let up = thread::spawn(move || {
        let _ = io::copy(&mut c_read, &mut u_write);
        let _ = u_write.shutdown(Shutdown::Write);
    });
    let (mut u_read, mut c_write) = (upstream, client);
    let _ = io::copy(&mut u_read, &mut c_write);
    let _ = c_write.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}
