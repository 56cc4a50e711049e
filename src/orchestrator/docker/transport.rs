//! ureq agents for a Docker Engine: a unix-socket transport (ureq's unversioned
//! connector API) and plain TCP. Owns only how bytes reach the engine, not what
//! is said (see `client`). Invariant: engine agents never use a proxy and never
//! turn HTTP statuses into errors, because the engine's error bodies carry the
//! reason (CONTRACT §6.1; DEPENDENCIES §2 for the measured transport notes).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use ureq::Agent;
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, LazyBuffers, NextTimeout, ShutdownHandle, Transport,
};

/// The default per-request timeout (CONTRACT §6.1).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Engine requests are small; ureq's default 128 KiB per direction and connection is waste.
const BUFFER_SIZE: usize = 16 * 1024;

/// The agent configuration every engine agent shares.
fn engine_config() -> Config {
    Agent::config_builder()
        // The default config reads ALL_PROXY/HTTPS_PROXY/HTTP_PROXY from the
        // environment; the engine is never reached through the connectors' proxy.
        .proxy(None)
        .http_status_as_error(false)
        // A redirect would carry `X-Registry-Auth` to whatever host it names;
        // an engine never sends one, so a 3xx is an answer (issue 12).
        .max_redirects(0)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .input_buffer_size(BUFFER_SIZE)
        .output_buffer_size(BUFFER_SIZE)
        .user_agent("xtm-composer")
        .build()
}

/// An agent that sends every request to the unix socket at `path`; the URL's
/// host is ignored.
pub(crate) fn unix_agent(path: impl Into<PathBuf>) -> Agent {
    Agent::with_parts(engine_config(), UnixConnector(path.into()), NoResolve)
}

/// An agent for `tcp://host:port` engines (plain HTTP, no proxy).
pub(crate) fn tcp_agent() -> Agent {
    Agent::new_with_config(engine_config())
}

#[derive(Debug, Clone)]
struct UnixConnector(PathBuf);

impl Connector<()> for UnixConnector {
    type Out = UnixTransport;

    fn connect(
        &self,
        details: &ConnectionDetails,
        _chained: Option<()>,
    ) -> Result<Option<UnixTransport>, ureq::Error> {
        let stream = Arc::new(SharedStream(UnixStream::connect(&self.0)?));
        let transport = UnixTransport {
            buffers: LazyBuffers::new(
                details.config.input_buffer_size(),
                details.config.output_buffer_size(),
            ),
            stream,
            read_timeout: None,
            write_timeout: None,
        };
        // Since ureq 3.5 a connector must register a handle so that
        // `Agent::shutdown()` can interrupt a blocked read.
        let handle: Weak<dyn ShutdownHandle> = Arc::downgrade(&transport.stream) as Weak<_>;
        (details.register_shutdown)(handle)?;
        Ok(Some(transport))
    }
}

/// A newtype so the foreign `ShutdownHandle` trait can be implemented.
#[derive(Debug)]
struct SharedStream(UnixStream);

impl ShutdownHandle for SharedStream {
    fn shutdown(&self) {
        // Errors here only mean the socket is already closed.
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

#[derive(Debug)]
struct UnixTransport {
    stream: Arc<SharedStream>,
    buffers: LazyBuffers,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

fn to_ureq(e: io::Error, timeout: &NextTimeout) -> ureq::Error {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ureq::Error::Timeout(timeout.reason),
        _ => ureq::Error::Io(e),
    }
}

impl Transport for UnixTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let timeout = timeout.for_write();
        if timeout.after.is_zero() {
            return Err(ureq::Error::Timeout(timeout.reason));
        }
        let want = timeout.not_zero().map(|d| *d);
        if want != self.write_timeout {
            self.stream.0.set_write_timeout(want)?;
            self.write_timeout = want;
        }
        let output = &self.buffers.output()[..amount];
        (&self.stream.0)
            .write_all(output)
            .map_err(|e| to_ureq(e, &timeout))
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let timeout = timeout.for_read();
        if timeout.after.is_zero() {
            return Err(ureq::Error::Timeout(timeout.reason));
        }
        let want = timeout.not_zero().map(|d| *d);
        if want != self.read_timeout {
            self.stream.0.set_read_timeout(want)?;
            self.read_timeout = want;
        }
        let buf = self.buffers.input_append_buf();
        let n = loop {
            match (&self.stream.0).read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        }
        .map_err(|e| to_ureq(e, &timeout))?;
        self.buffers.input_appended(n);
        Ok(n > 0)
    }

    /// The same probe as ureq's TCP transport: a pooled connection is reusable
    /// when a non-blocking read would block (no EOF, no stray bytes).
    fn is_open(&mut self) -> bool {
        let stream = &self.stream.0;
        if stream.set_nonblocking(true).is_err() {
            return false;
        }
        let open = matches!(
            (&*stream).read(&mut [0u8; 1]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        );
        open && stream.set_nonblocking(false).is_ok()
    }
}

/// The socket path is the address: never touch DNS for the placeholder host.
#[derive(Debug)]
struct NoResolve;

impl Resolver for NoResolve {
    fn resolve(
        &self,
        _uri: &Uri,
        _config: &Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let mut addrs = self.empty();
        addrs.push(([127, 0, 0, 1], 0).into());
        Ok(addrs)
    }
}
