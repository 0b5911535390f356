//! Hamlib's rigctld over TCP: PTT with `T 1` / `T 0`, carrier detect by polling `\get_dcd`.
//!
//! The protocol is one command per line. `T 1` and `T 0` answer `RPRT 0`, or `RPRT -n` with a
//! Hamlib error code ([`rprt_meaning`]); `t` and `\get_dcd` answer the bare value (`0`, `1`)
//! or `RPRT -n`.
//!
//! Every exchange has a 300 ms budget, connecting included, so `Ptt::set` never holds the
//! gateway up for long. Any failure drops the connection; the next call connects again, so a
//! restarted rigctld is picked up by itself. A call whose connection closes before the
//! answer (rigctld restarted since the last call, or rigctld dropping one of several clients,
//! which Hamlib 4.5 does now and then) tries once more on a new connection within the same
//! budget; the commands are idempotent, so a repeat does no harm.
//!
//! The carrier detect polls `\get_dcd` on a thread every `poll_ms`, backing off up to 5 s
//! while rigctld cannot be reached; `update` returns the last value, or an error while the
//! value is unknown.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tracing::{info, warn};

use super::polled::{LineState, PolledCarrier};
use super::{Fault, Ptt, PttReadback, RadioError, Remedy};
use crate::audio::debug_fields;
use crate::net::backoff::Backoff;

/// rigctld's default address.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:4532";
/// rigctld's default port.
pub const DEFAULT_PORT: u16 = 4532;
/// Budget of one exchange (connect, send, answer).
pub const TIMEOUT: Duration = Duration::from_millis(300);
/// Budget of the `ptt-off` command's exchange, which nothing waits on.
const FORCE_OFF_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest answer line accepted.
const MAX_LINE: usize = 512;

fn default_address() -> String {
    DEFAULT_ADDRESS.to_string()
}

fn default_poll_ms() -> u32 {
    100
}

/// `ptt = { type = "rigctld", address = "127.0.0.1:4532" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RigctldPttSettings {
    /// `host:port` of rigctld (default "127.0.0.1:4532"; the port defaults to 4532).
    #[serde(default = "default_address")]
    pub address: String,
}

impl Default for RigctldPttSettings {
    fn default() -> Self {
        RigctldPttSettings {
            address: default_address(),
        }
    }
}

/// `carrier = { type = "rigctld", address = "127.0.0.1:4532", poll_ms = 100 }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RigctldCarrierSettings {
    /// `host:port` of rigctld (default "127.0.0.1:4532").
    #[serde(default = "default_address")]
    pub address: String,
    /// How often to ask for DCD, in ms (default 100; 10 to 10000).
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u32,
}

impl Default for RigctldCarrierSettings {
    fn default() -> Self {
        RigctldCarrierSettings {
            address: default_address(),
            poll_ms: default_poll_ms(),
        }
    }
}

/// The name and meaning of a Hamlib error code (as in `RPRT -n`; the sign is ignored).
pub fn rprt_meaning(code: i32) -> (&'static str, &'static str) {
    match code.unsigned_abs() {
        0 => ("OK", "completed"),
        1 => ("EINVAL", "invalid parameter"),
        2 => ("ECONF", "invalid configuration"),
        3 => ("ENOMEM", "memory shortage"),
        4 => ("ENIMPL", "function not implemented"),
        5 => ("ETIMEOUT", "communication with the radio timed out"),
        6 => ("EIO", "input/output error talking to the radio"),
        7 => ("EINTERNAL", "internal Hamlib error"),
        8 => ("EPROTO", "protocol error with the radio"),
        9 => ("ERJCTED", "command rejected by the radio"),
        10 => ("ETRUNC", "argument truncated"),
        11 => ("ENAVAIL", "function not available"),
        12 => ("ENTARGET", "VFO not targetable"),
        13 => ("EBUSERROR", "bus error"),
        14 => ("EBUSBUSY", "bus collision"),
        15 => ("EARG", "invalid argument"),
        16 => ("EVFO", "invalid VFO"),
        17 => ("EDOM", "argument out of range"),
        18 => ("EDEPRECATED", "function deprecated"),
        19 => ("ESECURITY", "security error"),
        20 => ("EPOWER", "the radio is not powered on"),
        21 => ("ELIMIT", "limit exceeded"),
        22 => ("EACCESS", "access denied"),
        _ => ("unknown", "unknown Hamlib error"),
    }
}

/// What to check for a Hamlib error code, for messages.
fn rprt_advice(code: i32, command: &str) -> &'static str {
    match code.unsigned_abs() {
        1 | 4 | 11 if command.starts_with('T') => {
            "check rigctld's PTT type (-P RIG for CAT PTT, or -P DTR/RTS with -p)"
        }
        4 | 11 => "this radio model cannot report it through rigctld",
        5 | 6 | 8 | 13 | 20 => "check that the radio is on and its CAT cable and settings",
        _ => "see rigctld's log",
    }
}

/// Checks and resolves an address; `key` names the setting in errors.
pub fn parse_address(key: &str, address: &str) -> Result<Vec<SocketAddr>, Fault> {
    let a = address.trim();
    if a.is_empty() {
        return Err(Fault::Setting(format!(
            "{key} is empty: use host:port, such as {DEFAULT_ADDRESS}"
        )));
    }
    // A bare host or IP address gets the default port.
    let with_port = if let Ok(ip) = a.parse::<std::net::IpAddr>() {
        SocketAddr::new(ip, DEFAULT_PORT).to_string()
    } else if (a.starts_with('[') && a.ends_with(']')) || !a.contains(':') {
        format!("{a}:{DEFAULT_PORT}")
    } else {
        a.to_string()
    };
    let addrs: Vec<SocketAddr> = with_port
        .to_socket_addrs()
        .map_err(|e| {
            // A name that does not resolve yet (no network at boot) is waited for.
            let message = format!("{key} {address:?}: not a usable address ({e}); use host:port, such as {DEFAULT_ADDRESS}");
            Fault::io(message, e)
        })?
        .collect();
    if addrs.is_empty() {
        return Err(Fault::Setting(format!(
            "{key} {address:?}: the host name has no address"
        )));
    }
    Ok(addrs)
}

/// Why an exchange with rigctld failed, with the command it was about.
#[derive(Debug, thiserror::Error)]
#[error("{}", failure.message(command, *timeout))]
pub struct RigctldError {
    failure: Failure,
    command: String,
    timeout: Duration,
}

impl RigctldError {
    fn new(failure: Failure, command: &str, timeout: Duration) -> Self {
        RigctldError {
            failure,
            command: command.to_string(),
            timeout,
        }
    }

    /// What to do about it: rigctld not reachable or not answering in time passes (it is
    /// starting, or restarting); an answer that is not rigctld's, or a command the rig
    /// refuses, needs the settings or the rig looked at.
    pub fn remedy(&self) -> Remedy {
        match &self.failure {
            Failure::Connect(_) | Failure::Timeout | Failure::Closed | Failure::Io(_) => {
                Remedy::Retry
            }
            Failure::TooLong | Failure::Garbage(_) => Remedy::FixSettings,
            Failure::Rprt(code) => match code.unsigned_abs() {
                // Timed out, an I/O or bus error between rigctld and the radio.
                5 | 6 | 8 | 13 | 14 => Remedy::Retry,
                // Not implemented or rejected: rigctld's PTT type, or the rig's model.
                1 | 2 | 4 | 11 | 15 => Remedy::FixSettings,
                _ => Remedy::FixHardware,
            },
        }
    }

    /// The Hamlib error code rigctld answered with (`RPRT -n`), if that was the failure.
    pub fn rprt(&self) -> Option<i32> {
        match self.failure {
            Failure::Rprt(code) => Some(code),
            _ => None,
        }
    }
}

/// Why an exchange failed.
#[derive(Debug)]
enum Failure {
    Connect(io::Error),
    Timeout,
    Closed,
    Io(io::Error),
    TooLong,
    Garbage(String),
    Rprt(i32),
}

impl Failure {
    /// A failure that means the connection died under us, worth one more try.
    fn dropped(&self) -> bool {
        match self {
            Failure::Closed => true,
            Failure::Io(e) => matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionAborted
            ),
            _ => false,
        }
    }

    /// Whether rigctld itself could not be reached or did not answer (as opposed to an
    /// answer we did not like).
    fn unreachable(&self) -> bool {
        matches!(
            self,
            Failure::Connect(_) | Failure::Timeout | Failure::Closed | Failure::Io(_)
        )
    }

    fn message(&self, command: &str, timeout: Duration) -> String {
        match self {
            Failure::Connect(e) => format!(
                "cannot connect to rigctld: {e}: is rigctld running and listening there? \
                 (Debian ships no unit for rigctld: hw/rigctld.md shows one to write)"
            ),
            Failure::Timeout => format!(
                "rigctld did not answer {command:?} within {} ms",
                timeout.as_millis()
            ),
            Failure::Closed => "rigctld closed the connection".to_string(),
            Failure::Io(e) => format!("talking to rigctld: {e}"),
            Failure::TooLong => format!(
                "the answer to {command:?} is longer than {MAX_LINE} bytes: is that rigctld?"
            ),
            Failure::Garbage(line) => {
                format!("unexpected answer {line:?} to {command:?}: is that rigctld?")
            }
            Failure::Rprt(code) => {
                let (name, meaning) = rprt_meaning(*code);
                format!(
                    "rigctld answered {command:?} with RPRT {code} ({name}: {meaning}); {}",
                    rprt_advice(*code, command)
                )
            }
        }
    }
}

/// Reads `RPRT n`: 0 is success.
fn parse_rprt(line: &str) -> Result<(), Failure> {
    match line.strip_prefix("RPRT ").map(|n| n.trim().parse::<i32>()) {
        Some(Ok(0)) => Ok(()),
        Some(Ok(code)) => Err(Failure::Rprt(code)),
        _ => Err(Failure::Garbage(line.to_string())),
    }
}

/// Reads a bare value (`0`, `1`, ...) or `RPRT -n`.
fn parse_flag(line: &str) -> Result<bool, Failure> {
    if line.starts_with("RPRT ") {
        parse_rprt(line)?;
        return Err(Failure::Garbage(line.to_string()));
    }
    match line.trim().parse::<i64>() {
        Ok(n) => Ok(n != 0),
        Err(_) => Err(Failure::Garbage(line.to_string())),
    }
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

fn io_failure(e: io::Error) -> Failure {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Failure::Timeout,
        io::ErrorKind::UnexpectedEof => Failure::Closed,
        _ => Failure::Io(e),
    }
}

fn remaining(deadline: Instant) -> Result<Duration, Failure> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left < Duration::from_millis(1) {
        return Err(Failure::Timeout);
    }
    Ok(left)
}

impl Conn {
    fn open(addrs: &[SocketAddr], deadline: Instant) -> Result<Conn, Failure> {
        let mut last = None;
        for addr in addrs {
            let left = remaining(deadline)?;
            match TcpStream::connect_timeout(addr, left) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(Conn {
                        stream,
                        buf: Vec::new(),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(Failure::Connect(last.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "no address")
        })))
    }

    fn send(&mut self, command: &str, deadline: Instant) -> Result<(), Failure> {
        self.stream
            .set_write_timeout(Some(remaining(deadline)?))
            .map_err(io_failure)?;
        let mut line = Vec::with_capacity(command.len() + 1);
        line.extend_from_slice(command.as_bytes());
        line.push(b'\n');
        self.stream.write_all(&line).map_err(io_failure)
    }

    fn read_line(&mut self, deadline: Instant) -> Result<String, Failure> {
        let mut chunk = [0u8; 256];
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Ok(String::from_utf8_lossy(&line).trim().to_string());
            }
            if self.buf.len() > MAX_LINE {
                return Err(Failure::TooLong);
            }
            self.stream
                .set_read_timeout(Some(remaining(deadline)?))
                .map_err(io_failure)?;
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(Failure::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_failure(e)),
            }
        }
    }
}

/// A rigctld connection made on demand and dropped on any failure.
struct Client {
    addrs: Vec<SocketAddr>,
    timeout: Duration,
    conn: Option<Conn>,
}

impl Client {
    fn new(addrs: Vec<SocketAddr>, timeout: Duration) -> Self {
        Client {
            addrs,
            timeout,
            conn: None,
        }
    }

    /// Sends `command` and returns the first answer line, parsed by `parse`. A garbled or
    /// missing answer drops the connection; an `RPRT -n` keeps it.
    fn ask<T>(
        &mut self,
        command: &str,
        parse: impl Fn(&str) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let deadline = Instant::now() + self.timeout;
        match self.try_ask(command, deadline, &parse) {
            // rigctld restarted since the last call, or dropped us: one new connection.
            Err(f) if f.dropped() && Instant::now() < deadline => {
                self.try_ask(command, deadline, &parse)
            }
            other => other,
        }
    }

    fn try_ask<T>(
        &mut self,
        command: &str,
        deadline: Instant,
        parse: &impl Fn(&str) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let mut conn = match self.conn.take() {
            // Leftover bytes mean a previous answer was not what we thought: start afresh.
            Some(c) if c.buf.is_empty() => c,
            _ => Conn::open(&self.addrs, deadline)?,
        };
        conn.send(command, deadline)?;
        let line = conn.read_line(deadline)?;
        let result = parse(&line);
        match &result {
            Ok(_) | Err(Failure::Rprt(_)) => self.conn = Some(conn),
            Err(_) => {}
        }
        result
    }
}

/// PTT through rigctld.
pub struct RigctldPtt {
    client: Client,
    address: String,
    /// The last set failed: log the recovery once.
    failed: bool,
}

debug_fields!(RigctldPtt { address });

impl RigctldPtt {
    /// Connects and sends `T 0`, so the transmitter is unkeyed and the whole chain (rigctld,
    /// the radio) is known to answer before the gateway starts.
    pub fn open(s: &RigctldPttSettings) -> Result<Self, RadioError> {
        Self::open_with_timeout(s, TIMEOUT)
    }

    fn open_with_timeout(s: &RigctldPttSettings, timeout: Duration) -> Result<Self, RadioError> {
        let addrs =
            parse_address("ptt.address", &s.address).map_err(|f| RadioError::ptt("rigctld", f))?;
        let mut ptt = RigctldPtt {
            client: Client::new(addrs, timeout),
            address: s.address.trim().to_string(),
            failed: false,
        };
        ptt.set(false)?;
        info!(ptt = %ptt.describe(), "PTT ready, unkeyed");
        Ok(ptt)
    }
}

impl Ptt for RigctldPtt {
    fn set(&mut self, keyed: bool) -> Result<(), RadioError> {
        let command = if keyed { "T 1" } else { "T 0" };
        let result = self.client.ask(command, parse_rprt);
        self.outcome(command, result)
    }

    /// Reads the PTT state (`t`): the radio may be keyed from its own microphone, which
    /// a `T 0` would cut off.
    fn check(&mut self) -> Result<(), RadioError> {
        let result = self.client.ask("t", parse_flag).map(drop);
        self.outcome("t", result)
    }

    /// Reads `t` on a connection of its own.
    fn readback(&self) -> Option<Box<dyn PttReadback>> {
        Some(Box::new(RigctldReadback {
            client: Client::new(self.client.addrs.clone(), self.client.timeout),
            address: self.address.clone(),
        }))
    }

    fn describe(&self) -> String {
        format!("rigctld {}", self.address)
    }
}

/// Reads the PTT state (`t`) for [`Ptt::readback`].
struct RigctldReadback {
    client: Client,
    address: String,
}

impl PttReadback for RigctldReadback {
    fn keyed(&mut self) -> Result<bool, RadioError> {
        self.client.ask("t", parse_flag).map_err(|f| {
            let what = format!("ptt.address {}", self.address);
            RadioError::ptt("rigctld", rigctld_fault(&what, f, "t", self.client.timeout))
        })
    }
}

impl RigctldPtt {
    /// Logs the first failure and the recovery once, and names the address in the error.
    fn outcome(&mut self, command: &str, result: Result<(), Failure>) -> Result<(), RadioError> {
        match result {
            Ok(()) => {
                if self.failed {
                    self.failed = false;
                    info!(ptt = %self.describe(), "rigctld back");
                }
                Ok(())
            }
            Err(f) => {
                if !self.failed && f.unreachable() {
                    warn!(ptt = %self.describe(), "rigctld unreachable");
                }
                self.failed = true;
                let what = format!("ptt.address {}", self.address);
                let fault = rigctld_fault(&what, f, command, self.client.timeout);
                Err(RadioError::ptt("rigctld", fault))
            }
        }
    }
}

/// Forces the transmitter off (the `ptt-off` command): connects, sends `T 0`, checks the
/// answer, with a 2 s budget since nothing else waits on it.
pub fn force_off(s: &RigctldPttSettings) -> Result<(), RadioError> {
    RigctldPtt::open_with_timeout(s, FORCE_OFF_TIMEOUT).map(drop)
}

/// Asks rigctld at `address` whether the transmitter is keyed (`t`), for checks and tests.
pub fn read_ptt(address: &str) -> Result<bool, RadioError> {
    let addrs = parse_address("address", address).map_err(|f| RadioError::ptt("rigctld", f))?;
    Client::new(addrs, TIMEOUT)
        .ask("t", parse_flag)
        .map_err(|f| RadioError::ptt("rigctld", rigctld_fault(address, f, "t", TIMEOUT)))
}

/// A failed exchange about `what` (the setting and address) as a [`Fault`].
fn rigctld_fault(what: &str, failure: Failure, command: &str, timeout: Duration) -> Fault {
    let source = RigctldError::new(failure, command, timeout);
    Fault::Rigctld {
        message: format!("{what}: {source}"),
        source,
    }
}

// --- Carrier detect ---

/// Longest wait between attempts while rigctld cannot be reached.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Carrier detect from rigctld's DCD (`\get_dcd`).
pub type RigctldCarrier = PolledCarrier<Rigctld>;

/// Marks rigctld's [`PolledCarrier`].
#[derive(Debug)]
pub enum Rigctld {}

impl RigctldCarrier {
    /// Checks the settings and starts polling. rigctld need not be reachable yet: until it
    /// is, `update` returns an error.
    pub fn open(s: &RigctldCarrierSettings) -> Result<Self, RadioError> {
        if !(10..=10_000).contains(&s.poll_ms) {
            return Err(RadioError::carrier(
                "rigctld",
                Fault::Setting(format!(
                    "carrier.poll_ms = {}: use 10 to 10000 ms (100 is usual)",
                    s.poll_ms
                )),
            ));
        }
        let addrs = parse_address("carrier.address", &s.address)
            .map_err(|f| RadioError::carrier("rigctld", f))?;
        let label = format!("rigctld {}", s.address.trim());
        let poll = Duration::from_millis(u64::from(s.poll_ms));
        let address = s.address.trim().to_string();
        let client = Client::new(addrs, TIMEOUT);
        // `verify`: the first `get_dcd` answer (or the error of the first that failed).
        PolledCarrier::start(
            "rigctld",
            false,
            label,
            "rigctld-carrier",
            Some((Duration::ZERO, TIMEOUT * 4 + Duration::from_secs(1))),
            move |state, label| poll_dcd(client, poll, state, label, address),
        )
    }
}

/// What the log said last, so each change is logged once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Fine,
    Unreachable,
    Refused,
}

fn poll_dcd(
    mut client: Client,
    poll: Duration,
    state: Arc<LineState>,
    label: String,
    address: String,
) {
    let command = "\\get_dcd";
    let mut health = Health::Fine;
    let mut backoff = Backoff::new(poll, MAX_BACKOFF);
    while !state.stopped() {
        let wait = match client.ask(command, parse_flag) {
            Ok(up) => {
                state.set(up);
                if health != Health::Fine {
                    info!(carrier = %label, "rigctld back");
                    health = Health::Fine;
                }
                backoff.reset();
                poll
            }
            Err(f) => {
                let now = if f.unreachable() {
                    Health::Unreachable
                } else {
                    Health::Refused
                };
                let message = f.message(command, TIMEOUT);
                let what = format!("carrier.address {address}");
                if now != health {
                    match now {
                        Health::Unreachable => {
                            warn!(carrier = %label, error = %message, "rigctld unreachable")
                        }
                        _ => warn!(carrier = %label, error = %message, "rigctld cannot report DCD"),
                    }
                    health = now;
                }
                state.fail(rigctld_fault(&what, f, command, TIMEOUT));
                // rigctld runs on this machine: no jitter needed, back off evenly.
                backoff.next_delay(0.0)
            }
        };
        if !state.sleep(wait) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radio::CarrierDetect as _;
    use crate::radio::testing::eventually_within;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::process::{Child, Command, Stdio};
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A fake rigctld: each connection is handed to `handler` with its number (from 0) on
    /// its own thread. Returns the address.
    fn fake_server(
        handler: impl Fn(usize, BufReader<TcpStream>, TcpStream) + Send + Sync + 'static,
    ) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let handler = Arc::new(handler);
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { return };
                let h = handler.clone();
                std::thread::spawn(move || {
                    let reader = BufReader::new(stream.try_clone().unwrap());
                    h(n, reader, stream)
                });
            }
        });
        address
    }

    /// Answers each line with `answer(line)`; `None` closes the connection.
    fn answering(
        answer: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> impl Fn(usize, BufReader<TcpStream>, TcpStream) + Send + Sync + 'static {
        move |_, reader, mut stream| {
            for line in reader.lines() {
                let Ok(line) = line else { return };
                match answer(&line) {
                    Some(a) => {
                        if stream.write_all(a.as_bytes()).is_err() {
                            return;
                        }
                    }
                    None => return,
                }
            }
        }
    }

    /// A fake rigctld that answers each line with `answer(line)`: its address and the lines
    /// it has seen.
    fn recording(
        answer: impl Fn(&str) -> &'static str + Send + Sync + 'static,
    ) -> (String, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let address = fake_server(answering(move |line| {
            s.lock().unwrap().push(line.to_string());
            Some(answer(line).into())
        }));
        (address, seen)
    }

    /// [`fake_server`] that counts the connections it has taken.
    fn counting_server(
        handler: impl Fn(usize, BufReader<TcpStream>, TcpStream) + Send + Sync + 'static,
    ) -> (String, Arc<AtomicUsize>) {
        let connections = Arc::new(AtomicUsize::new(0));
        let c = connections.clone();
        let address = fake_server(move |n, reader, stream| {
            c.fetch_add(1, Ordering::SeqCst);
            handler(n, reader, stream)
        });
        (address, connections)
    }

    fn ptt(address: &str) -> Result<RigctldPtt, RadioError> {
        RigctldPtt::open(&RigctldPttSettings {
            address: address.into(),
        })
    }

    #[test]
    fn keys_and_unkeys_with_t_commands() {
        let (address, seen) = recording(|_| "RPRT 0\n");
        let mut p = ptt(&address).unwrap();
        p.set(true).unwrap();
        p.set(false).unwrap();
        assert_eq!(*seen.lock().unwrap(), ["T 0", "T 1", "T 0"]);
        assert_eq!(p.describe(), format!("rigctld {address}"));
    }

    #[test]
    fn the_health_check_only_reads() {
        let (address, seen) = recording(|line| if line == "t" { "1\n" } else { "RPRT 0\n" });
        let mut p = ptt(&address).unwrap();
        // The rig keyed from its own microphone reads 1: the check leaves it alone.
        p.check().unwrap();
        assert_eq!(*seen.lock().unwrap(), ["T 0", "t"]);
    }

    #[test]
    fn rprt_errors_are_explained() {
        let address = fake_server(answering(|line| {
            Some(
                if line == "T 1" {
                    "RPRT -9\n"
                } else {
                    "RPRT 0\n"
                }
                .into(),
            )
        }));
        let mut p = ptt(&address).unwrap();
        let e = p.set(true).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "PTT rigctld: ptt.address {address}: rigctld answered \"T 1\" with RPRT -9 \
                 (ERJCTED: command rejected by the radio); see rigctld's log"
            )
        );
        // The connection stays usable after an error report.
        p.set(false).unwrap();

        assert_eq!(rprt_meaning(0).0, "OK");
        assert_eq!(rprt_meaning(-1), ("EINVAL", "invalid parameter"));
        assert_eq!(rprt_meaning(-2).0, "ECONF");
        assert_eq!(rprt_meaning(-4).0, "ENIMPL");
        assert_eq!(rprt_meaning(-5).0, "ETIMEOUT");
        assert_eq!(rprt_meaning(-6).0, "EIO");
        assert_eq!(rprt_meaning(-8).0, "EPROTO");
        assert_eq!(rprt_meaning(-9).0, "ERJCTED");
        assert_eq!(rprt_meaning(-11).0, "ENAVAIL");
        assert_eq!(rprt_meaning(-20), ("EPOWER", "the radio is not powered on"));
        assert_eq!(rprt_meaning(-99).0, "unknown");
        assert_eq!(rprt_meaning(i32::MIN).0, "unknown");
        assert!(Failure::Rprt(-1).message("T 1", TIMEOUT).contains("-P RIG"));
        assert!(
            Failure::Rprt(-20)
                .message("T 1", TIMEOUT)
                .contains("radio is on")
        );
    }

    #[test]
    fn a_refused_unkey_at_open_is_an_error() {
        let address = fake_server(answering(|_| Some("RPRT -1\n".into())));
        let e = ptt(&address).unwrap_err().to_string();
        assert!(e.contains("\"T 0\" with RPRT -1 (EINVAL"), "{e}");
    }

    #[test]
    fn a_restarted_rigctld_is_reconnected_within_the_call() {
        // The first connection answers once, then goes away; later ones behave.
        let (address, connections) = counting_server(|n, mut reader, mut stream| {
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                line.clear();
                let _ = stream.write_all(b"RPRT 0\n");
                if n == 0 {
                    return;
                }
            }
        });
        let mut p = ptt(&address).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        p.set(true).unwrap();
        assert_eq!(connections.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn disconnects_mid_way_are_errors_then_recover() {
        // Connection 0 answers the opening T 0, then closes on the next command without
        // answering; connections 1 to 3 close on their first command; later ones answer.
        let (address, connections) = counting_server(|n, mut reader, mut stream| {
            let mut line = String::new();
            let mut answered = 0;
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                line.clear();
                if (1..=3).contains(&n) || (n == 0 && answered == 1) {
                    return;
                }
                let _ = stream.write_all(b"RPRT 0\n");
                answered += 1;
            }
        });
        let mut p = ptt(&address).unwrap();
        // Connection 0 drops mid-way, the one retry (connection 1) too: an error.
        let e = p.set(true).unwrap_err().to_string();
        assert!(e.ends_with("rigctld closed the connection"), "{e}");
        assert_eq!(connections.load(Ordering::SeqCst), 2);
        // Each call tries at most twice, never loops.
        let e = p.set(true).unwrap_err().to_string();
        assert!(e.ends_with("rigctld closed the connection"), "{e}");
        assert_eq!(connections.load(Ordering::SeqCst), 4);
        // Connection 4 answers.
        p.set(true).unwrap();
        p.set(false).unwrap();
        assert_eq!(connections.load(Ordering::SeqCst), 5);
    }

    #[test]
    fn garbage_answers_drop_the_connection() {
        let garbage_sent = Arc::new(AtomicBool::new(false));
        let g = garbage_sent.clone();
        let (address, connections) = counting_server(move |_, reader, mut stream| {
            for line in reader.lines() {
                let Ok(line) = line else { return };
                let answer = if line == "T 1" && !g.swap(true, Ordering::SeqCst) {
                    "hello there\n"
                } else {
                    "RPRT 0\n"
                };
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        let mut p = ptt(&address).unwrap();
        let e = p.set(true).unwrap_err().to_string();
        assert!(
            e.ends_with("unexpected answer \"hello there\" to \"T 1\": is that rigctld?"),
            "{e}"
        );
        p.set(true).unwrap();
        assert_eq!(
            connections.load(Ordering::SeqCst),
            2,
            "reconnected after the garbage"
        );

        // Endless lines are cut off.
        let address = fake_server(|_, _reader, mut stream| {
            let _ = stream.write_all(&[b'x'; 4096]);
            std::thread::sleep(Duration::from_secs(1));
        });
        let e = ptt(&address).unwrap_err().to_string();
        assert!(e.contains("longer than 512 bytes"), "{e}");
    }

    #[test]
    fn a_silent_server_times_out() {
        let address = fake_server(|_, reader, _stream| {
            // Read and never answer.
            for _ in reader.lines() {}
        });
        let start = Instant::now();
        let e = ptt(&address).unwrap_err().to_string();
        let took = start.elapsed();
        assert!(
            e.ends_with("rigctld did not answer \"T 0\" within 300 ms"),
            "{e}"
        );
        assert!(took >= Duration::from_millis(250), "{took:?}");
        assert!(took < Duration::from_millis(800), "{took:?}");
        let e = read_ptt(&address).unwrap_err().to_string();
        assert!(e.contains("did not answer \"t\""), "{e}");
    }

    #[test]
    fn unreachable_rigctld_is_explained() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let address = format!("127.0.0.1:{port}");
        let e = ptt(&address).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "PTT rigctld: ptt.address {address}: cannot connect to rigctld:"
            )),
            "{e}"
        );
        assert!(e.contains("is rigctld running"), "{e}");
        // Debian ships rigctld without a unit: point at the guide, not at a unit.
        assert!(!e.contains("systemctl status rigctld"), "{e}");
        assert!(e.contains("hw/rigctld.md"), "{e}");
        assert!(force_off(&RigctldPttSettings { address }).is_err());
    }

    #[test]
    fn addresses() {
        for (text, expected) in [
            ("127.0.0.1:4533", "127.0.0.1:4533"),
            (" 127.0.0.1 ", "127.0.0.1:4532"),
            ("::1", "[::1]:4532"),
            ("[::1]", "[::1]:4532"),
            ("[::1]:4000", "[::1]:4000"),
        ] {
            let expected: SocketAddr = expected.parse().unwrap();
            assert_eq!(parse_address("a", text).unwrap(), [expected], "{text:?}");
        }
        assert!(!parse_address("a", "localhost").unwrap().is_empty());
        assert!(
            parse_address("ptt.address", "")
                .unwrap_err()
                .to_string()
                .contains("ptt.address is empty")
        );
        let e = parse_address("ptt.address", "localhost:radio")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("ptt.address \"localhost:radio\": not a usable address"),
            "{e}"
        );
        assert!(parse_address("a", "127.0.0.1:99999").is_err());
    }

    #[test]
    fn answers_are_parsed_strictly() {
        assert!(parse_rprt("RPRT 0").is_ok());
        assert!(matches!(parse_rprt("RPRT -6"), Err(Failure::Rprt(-6))));
        assert!(matches!(parse_rprt("RPRT x"), Err(Failure::Garbage(_))));
        assert!(matches!(parse_rprt("0"), Err(Failure::Garbage(_))));
        assert!(matches!(parse_flag("1"), Ok(true)));
        assert!(matches!(parse_flag("0"), Ok(false)));
        assert!(matches!(parse_flag("3"), Ok(true)));
        assert!(matches!(parse_flag("RPRT -11"), Err(Failure::Rprt(-11))));
        assert!(matches!(parse_flag("RPRT 0"), Err(Failure::Garbage(_))));
        assert!(matches!(parse_flag("DCD: 1"), Err(Failure::Garbage(_))));
    }

    #[test]
    fn carrier_polls_dcd_and_reports_outages() {
        let dcd = Arc::new(AtomicBool::new(false));
        let up = Arc::new(AtomicBool::new(true));
        let (d, u) = (dcd.clone(), up.clone());
        let address = fake_server(move |_, reader, mut stream| {
            for line in reader.lines() {
                let Ok(line) = line else { return };
                if !u.load(Ordering::SeqCst) {
                    return;
                }
                let answer = match line.as_str() {
                    "\\get_dcd" => format!("{}\n", d.load(Ordering::SeqCst) as u8),
                    _ => "RPRT -4\n".to_string(),
                };
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        let mut c = RigctldCarrier::open(&RigctldCarrierSettings {
            address: address.clone(),
            poll_ms: 10,
        })
        .unwrap();
        let second = Duration::from_secs(2);
        assert!(eventually_within(
            || matches!(c.update(-90.0, 20), Ok(false)),
            second
        ));
        dcd.store(true, Ordering::SeqCst);
        assert!(eventually_within(
            || matches!(c.update(-90.0, 20), Ok(true)),
            second
        ));
        // rigctld goes away: an error, not a stale value.
        up.store(false, Ordering::SeqCst);
        assert!(eventually_within(|| c.update(-90.0, 20).is_err(), second));
        let e = c.update(-90.0, 20).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "carrier detect rigctld: carrier.address {address}:"
            )),
            "{e}"
        );
        up.store(true, Ordering::SeqCst);
        assert!(eventually_within(
            || matches!(c.update(-90.0, 20), Ok(true)),
            second
        ));
        assert_eq!(c.describe(), format!("rigctld {address}"));
    }

    #[test]
    fn carrier_reports_a_rig_without_dcd() {
        let address = fake_server(answering(|_| Some("RPRT -11\n".into())));
        let mut c = RigctldCarrier::open(&RigctldCarrierSettings {
            address,
            poll_ms: 10,
        })
        .unwrap();
        assert!(eventually_within(
            || c.update(-90.0, 20).is_err(),
            Duration::from_secs(2)
        ));
        let e = c.update(-90.0, 20).unwrap_err().to_string();
        assert!(e.contains("RPRT -11 (ENAVAIL"), "{e}");
        assert!(e.contains("cannot report it"), "{e}");
    }

    #[test]
    fn carrier_settings_are_checked() {
        /// The error of a carrier on the default settings changed by `change`.
        fn refused(change: impl FnOnce(&mut RigctldCarrierSettings)) -> String {
            let mut s = RigctldCarrierSettings::default();
            change(&mut s);
            RigctldCarrier::open(&s).unwrap_err().to_string()
        }
        for poll_ms in [0, 5, 10_001] {
            let e = refused(|s| s.poll_ms = poll_ms);
            assert!(e.contains(&format!("carrier.poll_ms = {poll_ms}")), "{e}");
        }
        let e = refused(|s| s.address = String::new());
        assert!(e.contains("carrier.address is empty"), "{e}");
    }

    #[test]
    fn settings_deserialize_with_defaults() {
        let s: RigctldPttSettings = toml::from_str("").unwrap();
        assert_eq!(s.address, "127.0.0.1:4532");
        let s: RigctldCarrierSettings = toml::from_str("address = \"radio.lan:4532\"").unwrap();
        assert_eq!(s.poll_ms, 100);
        assert_eq!(s.address, "radio.lan:4532");
        assert!(toml::from_str::<RigctldPttSettings>("host = \"x\"").is_err());
        assert!(toml::from_str::<RigctldCarrierSettings>("poll_ms = -1").is_err());
    }

    // --- Against the real Hamlib dummy rig ---

    /// A rigctld process running the dummy rig, killed when dropped.
    struct Rigctld {
        child: Child,
        port: u16,
    }

    impl Rigctld {
        fn start(port: u16) -> Rigctld {
            // Its messages go to a file, which cannot fill up and block it like a pipe.
            let mut log = tempfile::tempfile().unwrap();
            let child = Command::new("rigctld")
                .args(["-m", "1", "-P", "RIG", "-T", "127.0.0.1", "-t"])
                .arg(port.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log.try_clone().unwrap()))
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot start rigctld ({e}): Hamlib's rigctld is needed for these \
                         tests; run scripts/deps.sh (it installs libhamlib-utils)"
                    )
                });
            let mut r = Rigctld { child, port };
            let start = Instant::now();
            let address = r.address();
            loop {
                // A bare answer to `t` means rigctld itself listens there (not some other
                // program that took the port).
                if read_ptt(&address).is_ok() {
                    return r;
                }
                if let Ok(Some(status)) = r.child.try_wait() {
                    let mut err = String::new();
                    let _ = std::io::Seek::rewind(&mut log);
                    let _ = log.read_to_string(&mut err);
                    panic!("rigctld exited at start ({status}): {err}");
                }
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "rigctld did not listen on port {port} within 10 s"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        fn address(&self) -> String {
            format!("127.0.0.1:{}", self.port)
        }

        fn stop(mut self) {
            self.kill();
        }

        fn kill(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Drop for Rigctld {
        fn drop(&mut self) {
            self.kill();
        }
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn real_rigctld_dummy_rig() {
        let port = free_port();
        let rig = Rigctld::start(port);
        let address = rig.address();

        let mut p = ptt(&address).unwrap();
        assert!(!read_ptt(&address).unwrap(), "unkeyed after open");
        p.set(true).unwrap();
        assert!(read_ptt(&address).unwrap(), "keyed");
        p.set(false).unwrap();
        assert!(!read_ptt(&address).unwrap(), "unkeyed");

        let mut dcd = RigctldCarrier::open(&RigctldCarrierSettings {
            address: address.clone(),
            poll_ms: 20,
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            matches!(dcd.update(-90.0, 20), Ok(false)),
            "the dummy's DCD reads 0"
        );

        // The health check reads and leaves a keyed rig keyed.
        p.set(true).unwrap();
        p.check().unwrap();
        assert!(read_ptt(&address).unwrap(), "still keyed after the check");
        p.set(false).unwrap();

        // rigctld dies: the check and the next set fail, and so does the carrier.
        rig.stop();
        assert!(p.check().is_err());
        let e = p.set(true).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("PTT rigctld: ptt.address {address}:")),
            "{e}"
        );
        assert!(read_ptt(&address).is_err());
        assert!(eventually_within(
            || dcd.update(-90.0, 20).is_err(),
            Duration::from_secs(2)
        ));

        // Back on the same port: the check and the next set work again.
        let rig = Rigctld::start(port);
        p.check().unwrap();
        p.set(false).unwrap();
        assert!(!read_ptt(&address).unwrap());
        p.set(true).unwrap();
        assert!(read_ptt(&address).unwrap());
        p.set(false).unwrap();
        assert!(!read_ptt(&address).unwrap());
        force_off(&RigctldPttSettings {
            address: address.clone(),
        })
        .unwrap();
        assert!(
            eventually_within(
                || matches!(dcd.update(-90.0, 20), Ok(false)),
                Duration::from_secs(10)
            ),
            "the carrier reconnects after its backoff"
        );
        drop(rig);
    }
}
