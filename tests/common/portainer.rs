//! A Portainer stand-in over TLS on 127.0.0.1: `/api/status`, `/api/endpoints`,
//! `/api/endpoints/{id}`, the `X-API-KEY` check (401 otherwise), and the Docker
//! proxy `/api/endpoints/{id}/docker/*`, passed byte for byte to the real
//! dockerd socket, so the engine side of every Portainer test is real.
//! One request per connection; every request is recorded.

use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use rustls::{ServerConnection, StreamOwned};
use serde_json::json;

use super::http1::{Request, read_request, write_response};
use super::tls::TestCa;

/// The one environment the stand-in knows: a local Docker engine (type 1).
pub const ENV_ID: &str = "1";

/// A request as the stand-in received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub key_ok: bool,
    pub registry_auth: bool,
}

/// A running stand-in; it lives as long as the test process.
pub struct StandIn {
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl StandIn {
    /// Serves with a certificate of `ca`, accepting `api_key`, proxying to `socket`.
    pub fn start(ca: &TestCa, api_key: &str, socket: &str) -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "https://127.0.0.1:{}",
            listener.local_addr().unwrap().port()
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tls, key, socket, log) = (
            ca.server.clone(),
            api_key.to_string(),
            socket.to_string(),
            seen.clone(),
        );
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let (tls, key, socket, log) =
                    (tls.clone(), key.clone(), socket.clone(), log.clone());
                std::thread::spawn(move || {
                    let Ok(conn) = ServerConnection::new(tls) else {
                        return;
                    };
                    let mut stream = StreamOwned::new(conn, tcp);
                    // A client refusing the certificate ends the handshake here.
                    let _ = serve(&mut stream, &key, &socket, &log);
                    stream.conn.send_close_notify();
                    let _ = stream.flush();
                });
            }
        });
        StandIn { url, seen }
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

type Tls = StreamOwned<ServerConnection, TcpStream>;

fn serve(stream: &mut Tls, key: &str, socket: &str, log: &Mutex<Vec<Seen>>) -> io::Result<()> {
    let req = read_request(stream)?;
    let key_ok = req.header("X-API-KEY") == Some(key);
    log.lock().unwrap().push(Seen {
        method: req.method.clone(),
        target: req.target.clone(),
        key_ok,
        registry_auth: req.header("X-Registry-Auth").is_some(),
    });
    let path = req.target.split('?').next().unwrap_or_default().to_string();
    if path == "/api/status" {
        return reply(
            stream,
            200,
            json!({"Version": "2.19.4", "InstanceID": "stand-in"}),
        );
    }
    if !key_ok {
        let body =
            json!({"message": "Unauthorized", "details": "A valid authorisation token is missing"});
        return reply(stream, 401, body);
    }
    let endpoint = json!({"Id": 1, "Name": "local", "Type": 1, "URL": "unix:///var/run/docker.sock", "Status": 1});
    let rest = path.strip_prefix("/api/endpoints");
    match rest.map(|r| r.trim_start_matches('/').splitn(3, '/').collect::<Vec<_>>()) {
        Some(parts) if parts == [""] => reply(stream, 200, json!([endpoint])),
        Some(parts) if parts[0] != ENV_ID => reply(
            stream,
            404,
            json!({"message": "Unable to find an environment with the specified identifier inside the database"}),
        ),
        Some(parts) if parts.len() == 1 => reply(stream, 200, endpoint),
        Some(parts) if parts[1] == "docker" => {
            let prefix = format!("/api/endpoints/{ENV_ID}/docker");
            proxy(stream, &req, &req.target[prefix.len()..], socket)
        }
        _ => reply(stream, 404, json!({"message": "not found"})),
    }
}

fn reply(stream: &mut Tls, status: u16, body: serde_json::Value) -> io::Result<()> {
    write_response(
        stream,
        status,
        "application/json",
        body.to_string().as_bytes(),
    )
}

/// Sends the request to the engine and streams its answer back unchanged
/// (chunked log and pull streams included); both sides close after it.
fn proxy(stream: &mut Tls, req: &Request, target: &str, socket: &str) -> io::Result<()> {
    let mut engine = UnixStream::connect(socket)?;
    let mut head = format!(
        "{} {target} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Length: {}\r\n",
        req.method,
        req.body.len()
    );
    for name in ["Content-Type", "X-Registry-Auth"] {
        if let Some(value) = req.header(name) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str("\r\n");
    engine.write_all(head.as_bytes())?;
    engine.write_all(&req.body)?;
    io::copy(&mut engine, stream)?;
    stream.flush()
}
