//! `xtm-composer status`: asks the running daemon's listener (plain HTTP on
//! the configured address) for `/healthz` and `/status` and prints them for a
//! person. The daemon's own answers are the only source: nothing is
//! recomputed here.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

/// How long the daemon gets to answer.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read.
const MAX_ANSWER: u64 = 16 * 1024 * 1024;

/// Where to reach a listener bound to `listen`: an unspecified address
/// (`0.0.0.0`, `[::]`) is reached on loopback.
///
/// # Errors
/// `listen` is not an IP address and port.
pub fn target(listen: &str) -> Result<SocketAddr, String> {
    let mut a: SocketAddr = listen
        .parse()
        .map_err(|e| format!("manager.observability.listen = {listen}: {e}"))?;
    if a.ip().is_unspecified() {
        let lo = if a.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        a.set_ip(lo);
    }
    Ok(a)
}

/// `GET path` on `addr`: the status code and body.
///
/// # Errors
/// The daemon cannot be reached or answered something unreadable.
pub fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|e| format!("cannot reach the composer at http://{addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(TIMEOUT));
    let _ = s.set_write_timeout(Some(TIMEOUT));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| format!("http://{addr}{path}: {e}"))?;
    let mut raw = Vec::new();
    s.take(MAX_ANSWER)
        .read_to_end(&mut raw)
        .map_err(|e| format!("http://{addr}{path}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("http://{addr}{path}: no HTTP answer"))?;
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("http://{addr}{path}: no status code"))?;
    Ok((code, body.to_string()))
}

/// Asks the listener at `listen` and prints platforms, connectors and the
/// health verdict: success only when it answered and every loop is fresh.
pub fn show(listen: &str) -> ExitCode {
    let asked = target(listen).and_then(|addr| {
        let health = get(addr, "/healthz")?;
        let (code, body) = get(addr, "/status")?;
        let status: serde_json::Value = (code == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten()
            .ok_or_else(|| format!("http://{addr}/status answered {code}"))?;
        Ok((health, status))
    });
    let ((code, health), status) = match asked {
        Ok(v) => v,
        Err(e) => {
            eprintln!("xtm-composer: {e}");
            return ExitCode::FAILURE;
        }
    };
    for (kind, p) in status["platforms"].as_object().into_iter().flatten() {
        println!(
            "{kind}: registered {}, last listing {}, {} connector(s)",
            p["registered"],
            p["last_listing"].as_str().unwrap_or("never"),
            p["connectors"]
        );
    }
    print!("{}", table(&status));
    println!("health: {}", health.trim());
    if code == 200 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The `/status` JSON as an aligned table, one connector a line.
pub fn table(status: &Value) -> String {
    const COLUMNS: [(&str, &str); 9] = [
        ("PLATFORM", "platform"),
        ("ID", "id"),
        ("NAME", "name"),
        ("WORKLOAD", "workload"),
        ("REQUESTED", "requested"),
        ("ACTUAL", "actual"),
        ("RESTARTS", "restart_count"),
        ("LAST ACTION", "last_action"),
        ("NEXT TRY (s)", "next_retry_in_s"),
    ];
    let empty = Vec::new();
    let connectors = status["connectors"].as_array().unwrap_or(&empty);
    let mut rows: Vec<Vec<String>> = vec![COLUMNS.iter().map(|(h, _)| h.to_string()).collect()];
    for c in connectors {
        let mut row: Vec<String> = COLUMNS.iter().map(|(_, k)| cell(&c[*k])).collect();
        if let (Some(last), Some(outcome)) = (c["last_action"].as_str(), c["last_outcome"].as_str())
        {
            row[7] = format!("{last} ({outcome})");
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..COLUMNS.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    for c in connectors {
        if let Some(e) = c["last_error"].as_str() {
            out.push_str(&format!(
                "{} {}: {e}\n",
                cell(&c["platform"]),
                cell(&c["id"])
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_unspecified_listen_address_is_reached_on_loopback() {
        assert_eq!(
            target("0.0.0.0:9464").unwrap().to_string(),
            "127.0.0.1:9464"
        );
        assert_eq!(target("[::]:9464").unwrap().to_string(), "[::1]:9464");
        assert_eq!(target("10.0.0.1:1").unwrap().to_string(), "10.0.0.1:1");
        assert!(target("localhost:1").is_err());
    }

    #[test]
    fn the_table_aligns_columns_and_lists_errors_below() {
        let s = json!({"connectors": [
            {"platform": "opencti", "id": "c1", "name": "Alpha", "workload": "alpha",
             "requested": "starting", "actual": "running", "restart_count": 0,
             "last_action": "deploy", "last_outcome": "ok", "next_retry_in_s": null},
            {"platform": "opencti", "id": "c22", "name": "B", "workload": "b",
             "requested": "starting", "actual": "missing", "restart_count": 0,
             "last_action": "deploy", "last_outcome": "error", "last_error": "image b: not found",
             "next_retry_in_s": 40},
        ]});
        let t = table(&s);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("PLATFORM  ID   NAME"), "{t}");
        assert!(lines[1].contains("deploy (ok)"), "{t}");
        assert!(
            lines[2].contains("deploy (error)") && lines[2].ends_with("40"),
            "{t}"
        );
        assert_eq!(lines[3], "opencti c22: image b: not found");
    }
}
