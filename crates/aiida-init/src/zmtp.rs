//! ZeroMQ's wire protocol (ZMTP 3.0, NULL mechanism) as a ROUTER socket bound to a Unix socket
//! path: what circus's controller endpoint (`ipc://DIR/circus.c.sock`) is to its clients, pyzmq
//! DEALER sockets (circus's `CircusClient`, which aiida-core's `DaemonClient` and `verdi daemon`
//! use) and REQ sockets.
//!
//! Scope: requests and replies on the connection they came from. A request is one multipart
//! message; the frames before the last (a REQ peer's empty delimiter) are its envelope, sent back
//! in front of the reply. No security mechanism but NULL, no heartbeats of our own (a peer's PING
//! is answered with a PONG), frames up to [`MAX_FRAME`] bytes. A peer that breaks the protocol is
//! disconnected; the others are not affected.
//!
//! The framing is pure functions ([`greeting`], [`check_greeting`], [`decode_frame`],
//! [`encode_frame`], [`command_frame`]) tested on bytes; [`Router`] adds the sockets, without an
//! async runtime (aiida-init's rule): [`Router::poll`] polls the listener, the peers and one
//! descriptor of the caller's (its signalfd), and returns the complete requests.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// The length of a ZMTP 3 greeting.
pub const GREETING_LEN: usize = 64;
/// The largest frame a peer may send (a circus command is a few hundred bytes).
pub const MAX_FRAME: u64 = 1 << 20;
/// How long a reply may wait for a peer that does not read.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

const FLAG_MORE: u8 = 0x01;
const FLAG_LONG: u8 = 0x02;
const FLAG_COMMAND: u8 = 0x04;

/// Why a peer was disconnected.
#[derive(Debug, PartialEq)]
pub struct ProtocolError(pub String);

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn protocol_error<T>(what: impl Into<String>) -> Result<T, ProtocolError> {
    Err(ProtocolError(what.into()))
}

/// Our greeting: the signature, version 3.0, the NULL mechanism, as-server 0 (NULL ignores it).
pub fn greeting() -> [u8; GREETING_LEN] {
    let mut g = [0u8; GREETING_LEN];
    g[0] = 0xFF;
    g[8] = 0x01; // the padding, as libzmq writes it (the length of an empty identity, plus 1)
    g[9] = 0x7F;
    g[10] = 3;
    g[11] = 0;
    g[12..16].copy_from_slice(b"NULL");
    g
}

/// Check a peer's greeting: a ZMTP 3 peer (or later) with the NULL mechanism.
pub fn check_greeting(g: &[u8]) -> Result<(), ProtocolError> {
    if g.len() < GREETING_LEN || g[0] != 0xFF || g[9] & 0x01 == 0 {
        return protocol_error(
            "not a ZMTP 3 greeting (a ZeroMQ peer older than 3.0, or not ZeroMQ)",
        );
    }
    if g[10] < 3 {
        return protocol_error(format!(
            "ZMTP version {}.{} (3.0 or later needed)",
            g[10], g[11]
        ));
    }
    let mechanism = &g[12..32];
    let name_len = mechanism
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(mechanism.len());
    if &mechanism[..name_len] != b"NULL" {
        return protocol_error(format!(
            "security mechanism {:?} (only NULL is offered)",
            String::from_utf8_lossy(&mechanism[..name_len])
        ));
    }
    Ok(())
}

/// A frame taken from the front of a buffer.
#[derive(Debug, PartialEq)]
pub enum Frame {
    /// Part of a message; `more` when another part follows.
    Message { more: bool, body: Vec<u8> },
    /// A command (READY, PING, ...): its name and data.
    Command { name: String, data: Vec<u8> },
}

/// Decode the frame at the front of `buf`: `Ok(None)` while `buf` holds only part of it, else the
/// frame and the number of bytes it took.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>, ProtocolError> {
    let Some(&flags) = buf.first() else {
        return Ok(None);
    };
    if flags & !(FLAG_MORE | FLAG_LONG | FLAG_COMMAND) != 0 {
        return protocol_error(format!("frame flags {flags:#04x} have reserved bits set"));
    }
    let (size, header) = if flags & FLAG_LONG == 0 {
        let Some(&size) = buf.get(1) else {
            return Ok(None);
        };
        (u64::from(size), 2)
    } else {
        let Some(bytes) = buf.get(1..9) else {
            return Ok(None);
        };
        let mut be = [0u8; 8];
        be.copy_from_slice(bytes);
        (u64::from_be_bytes(be), 9)
    };
    if size > MAX_FRAME {
        return protocol_error(format!("a frame of {size} bytes (at most {MAX_FRAME})"));
    }
    // MAX_FRAME fits in usize on every platform aiida-init runs on (32 bits and more).
    let end = header + usize::try_from(size).map_err(|_| ProtocolError("frame size".into()))?;
    let Some(body) = buf.get(header..end) else {
        return Ok(None);
    };
    if flags & FLAG_COMMAND == 0 {
        let more = flags & FLAG_MORE != 0;
        return Ok(Some((
            Frame::Message {
                more,
                body: body.to_vec(),
            },
            end,
        )));
    }
    let Some((&name_len, rest)) = body.split_first() else {
        return protocol_error("an empty command frame");
    };
    let Some(name) = rest.get(..usize::from(name_len)) else {
        return protocol_error("a command frame shorter than its name");
    };
    let name = String::from_utf8_lossy(name).into_owned();
    let data = rest[usize::from(name_len)..].to_vec();
    Ok(Some((Frame::Command { name, data }, end)))
}

fn frame_header(out: &mut Vec<u8>, flags: u8, len: usize) {
    match u8::try_from(len) {
        Ok(short) => out.extend_from_slice(&[flags, short]),
        Err(_) => {
            out.push(flags | FLAG_LONG);
            // usize is at most 64 bits on every supported platform.
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

/// Append a message frame.
pub fn encode_frame(out: &mut Vec<u8>, body: &[u8], more: bool) {
    frame_header(out, if more { FLAG_MORE } else { 0 }, body.len());
    out.extend_from_slice(body);
}

/// A command frame with `name` and its properties (the READY command's metadata format).
pub fn command_frame(name: &str, properties: &[(&str, &[u8])]) -> Vec<u8> {
    let mut data = Vec::new();
    for (key, value) in properties {
        push_short_string(&mut data, key);
        // A property value is at most a few bytes here; u32 holds any we send.
        data.extend_from_slice(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_be_bytes());
        data.extend_from_slice(value);
    }
    command_frame_with_data(name, &data)
}

/// A command frame whose data is given as is (PONG's context, READY's encoded properties).
fn command_frame_with_data(name: &str, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    push_short_string(&mut body, name);
    body.extend_from_slice(data);
    let mut out = Vec::new();
    frame_header(&mut out, FLAG_COMMAND, body.len());
    out.extend_from_slice(&body);
    out
}

fn push_short_string(out: &mut Vec<u8>, s: &str) {
    // Names are ASCII and short (READY, Socket-Type): the length fits in a byte.
    out.push(u8::try_from(s.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(s.as_bytes());
}

/// The properties of a READY command's data: name (1-byte length) and value (4-byte length).
pub fn parse_properties(mut data: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ProtocolError> {
    let mut props = Vec::new();
    while let Some((&name_len, rest)) = data.split_first() {
        let name_len = usize::from(name_len);
        let (Some(name), Some(len)) = (rest.get(..name_len), rest.get(name_len..name_len + 4))
        else {
            return protocol_error("a truncated property in a READY command");
        };
        let value_len = usize::try_from(u32::from_be_bytes([len[0], len[1], len[2], len[3]]))
            .map_err(|_| ProtocolError("property length".into()))?;
        let start = name_len + 4;
        let Some(value) = rest.get(start..start + value_len) else {
            return protocol_error("a truncated property value in a READY command");
        };
        props.push((String::from_utf8_lossy(name).into_owned(), value.to_vec()));
        data = &rest[start + value_len..];
    }
    Ok(props)
}

#[derive(Debug, PartialEq)]
enum Stage {
    /// Waiting for the peer's greeting.
    Greeting,
    /// Waiting for the peer's READY command.
    Ready,
    /// Exchanging messages.
    Messages,
}

/// One connected peer: its socket, what it sent that is not decoded yet, the parts of the
/// message it is sending.
struct Peer {
    stream: UnixStream,
    input: Vec<u8>,
    stage: Stage,
    parts: Vec<Vec<u8>>,
}

/// A complete request.
#[derive(Debug)]
pub struct Request {
    /// The peer it came from, to reply to.
    pub peer: u64,
    /// The frames before the body (a REQ peer's empty delimiter), sent back before the reply.
    pub envelope: Vec<Vec<u8>>,
    pub body: Vec<u8>,
}

impl Peer {
    fn accept(stream: UnixStream) -> io::Result<Peer> {
        stream.set_nonblocking(true)?;
        let mut peer = Peer {
            stream,
            input: Vec::new(),
            stage: Stage::Greeting,
            parts: Vec::new(),
        };
        let mut hello = greeting().to_vec();
        hello.extend(command_frame("READY", &[("Socket-Type", b"ROUTER")]));
        peer.send(&hello)?;
        Ok(peer)
    }

    /// Read what the peer sent and decode it; the complete requests, or why to disconnect it.
    fn receive(&mut self, id: u64, requests: &mut Vec<Request>) -> Result<(), String> {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("closed".into()),
                Ok(n) => self.input.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        self.decode(id, requests).map_err(|e| e.0)
    }

    fn decode(&mut self, id: u64, requests: &mut Vec<Request>) -> Result<(), ProtocolError> {
        if self.stage == Stage::Greeting {
            if self.input.len() < GREETING_LEN {
                return Ok(());
            }
            check_greeting(&self.input[..GREETING_LEN])?;
            self.input.drain(..GREETING_LEN);
            self.stage = Stage::Ready;
        }
        let mut taken = 0;
        while let Some((frame, len)) = decode_frame(&self.input[taken..])? {
            taken += len;
            match frame {
                Frame::Command { name, data } => self.command(&name, &data)?,
                Frame::Message { .. } if self.stage == Stage::Ready => {
                    return protocol_error("a message before the READY command");
                }
                Frame::Message { more, body } => {
                    self.parts.push(body);
                    if !more {
                        let mut parts = std::mem::take(&mut self.parts);
                        let body = parts.pop().unwrap_or_default();
                        requests.push(Request {
                            peer: id,
                            envelope: parts,
                            body,
                        });
                    }
                }
            }
        }
        self.input.drain(..taken);
        Ok(())
    }

    fn command(&mut self, name: &str, data: &[u8]) -> Result<(), ProtocolError> {
        match name {
            "READY" if self.stage == Stage::Ready => {
                let props = parse_properties(data)?;
                let socket_type = props
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("Socket-Type"))
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
                match socket_type.as_deref() {
                    Some("DEALER" | "REQ" | "ROUTER") => {
                        self.stage = Stage::Messages;
                        Ok(())
                    }
                    other => protocol_error(format!(
                        "socket type {other:?} cannot talk to a ROUTER socket"
                    )),
                }
            }
            "PING" => {
                // PING: a 2-byte TTL, then a context the PONG echoes.
                let context = data.get(2..).unwrap_or_default();
                let pong = command_frame_with_data("PONG", context);
                self.send(&pong)
                    .map_err(|e| ProtocolError(format!("PONG: {e}")))
            }
            "READY" => protocol_error("a second READY command"),
            "ERROR" => protocol_error(format!(
                "the peer reported an error: {}",
                String::from_utf8_lossy(data.get(1..).unwrap_or_default())
            )),
            _ => Ok(()), // other commands (SUBSCRIBE, PONG, ...) mean nothing to a ROUTER
        }
    }

    /// Write all of `bytes`, waiting for the peer to read for at most SEND_TIMEOUT.
    fn send(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        let deadline = Instant::now() + SEND_TIMEOUT;
        while !bytes.is_empty() {
            match self.stream.write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "peer not reading"));
                    }
                    let mut fds = [PollFd::new(self.stream.as_fd(), PollFlags::POLLOUT)];
                    poll(&mut fds, crate::pid1::poll_timeout(Some(deadline)))
                        .map_err(io::Error::from)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A ROUTER socket bound to a Unix socket path, and its peers.
pub struct Router {
    listener: UnixListener,
    path: PathBuf,
    peers: BTreeMap<u64, Peer>,
    next_peer: u64,
}

/// What [`Router::poll`] found.
pub struct Polled {
    pub requests: Vec<Request>,
    /// The caller's descriptor is readable.
    pub extra_ready: bool,
}

impl Router {
    /// Bind at `path` (a socket file left there by a process that is gone is replaced).
    pub fn bind(path: &Path) -> io::Result<Router> {
        if std::fs::symlink_metadata(path)
            .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
        {
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        Ok(Router {
            listener,
            path: path.to_path_buf(),
            peers: BTreeMap::new(),
            next_peer: 0,
        })
    }

    /// Wait until a peer sent something, `extra` is readable or `timeout` passed; accept new
    /// peers and return the complete requests.
    pub fn poll(&mut self, extra: BorrowedFd, timeout: PollTimeout) -> io::Result<Polled> {
        let (extra_ready, listener_ready, ready_peers) = {
            let mut fds = vec![
                PollFd::new(extra, PollFlags::POLLIN),
                PollFd::new(self.listener.as_fd(), PollFlags::POLLIN),
            ];
            let ids: Vec<u64> = self.peers.keys().copied().collect();
            fds.extend(
                self.peers
                    .values()
                    .map(|p| PollFd::new(p.stream.as_fd(), PollFlags::POLLIN)),
            );
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
            let peers: Vec<u64> = ids
                .iter()
                .zip(&fds[2..])
                .filter(|(_, fd)| ready(fd))
                .map(|(id, _)| *id)
                .collect();
            (ready(&fds[0]), ready(&fds[1]), peers)
        };
        let mut requests = Vec::new();
        for id in ready_peers {
            let broken = self
                .peers
                .get_mut(&id)
                .is_some_and(|peer| peer.receive(id, &mut requests).is_err());
            if broken {
                self.peers.remove(&id);
            }
        }
        if listener_ready {
            self.accept_all();
        }
        Ok(Polled {
            requests,
            extra_ready,
        })
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if let Ok(peer) = Peer::accept(stream) {
                        self.peers.insert(self.next_peer, peer);
                        self.next_peer += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return, // WouldBlock: none left; anything else: try at the next poll
            }
        }
    }

    /// Send `body` to the peer `request` came from, after its envelope. A peer that is gone or
    /// does not read is dropped.
    pub fn reply(&mut self, request: &Request, body: &[u8]) {
        let mut out = Vec::new();
        for part in &request.envelope {
            encode_frame(&mut out, part, true);
        }
        encode_frame(&mut out, body, false);
        let broken = self
            .peers
            .get_mut(&request.peer)
            .is_some_and(|peer| peer.send(&out).is_err());
        if broken {
            self.peers.remove(&request.peer);
        }
    }

    /// The number of connected peers.
    pub fn peers(&self) -> usize {
        self.peers.len()
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_greeting_passes_our_own_check_and_names_null() {
        let g = greeting();
        assert_eq!(check_greeting(&g), Ok(()));
        assert_eq!(&g[12..16], b"NULL");
        assert_eq!((g[10], g[11]), (3, 0));
    }

    #[test]
    fn greetings_of_old_peers_and_other_mechanisms_are_refused() {
        let mut old = greeting();
        old[9] = 0x7E; // ZMTP 1.0's padding has no low bit here
        assert!(check_greeting(&old).unwrap_err().0.contains("ZMTP 3"));
        let mut v2 = greeting();
        v2[10] = 2;
        assert!(check_greeting(&v2).unwrap_err().0.contains("version 2.0"));
        let mut curve = greeting();
        curve[12..17].copy_from_slice(b"CURVE");
        assert!(check_greeting(&curve).unwrap_err().0.contains("CURVE"));
    }

    #[test]
    fn short_and_long_frames_round_trip_and_partial_input_waits() {
        let long_body = vec![7u8; 300];
        let mut out = Vec::new();
        encode_frame(&mut out, b"", true);
        encode_frame(&mut out, &long_body, false);
        assert_eq!(&out[..2], &[FLAG_MORE, 0]);
        assert_eq!(out[2], FLAG_LONG);
        let (first, n) = decode_frame(&out).unwrap().unwrap();
        assert_eq!(
            first,
            Frame::Message {
                more: true,
                body: vec![]
            }
        );
        for cut in n..out.len() {
            assert_eq!(decode_frame(&out[n..cut]), Ok(None), "cut at {cut}");
        }
        let (second, m) = decode_frame(&out[n..]).unwrap().unwrap();
        assert_eq!(
            second,
            Frame::Message {
                more: false,
                body: long_body
            }
        );
        assert_eq!(n + m, out.len());
    }

    #[test]
    fn a_ready_command_carries_its_properties() {
        let frame = command_frame("READY", &[("Socket-Type", b"DEALER"), ("Identity", b"")]);
        let (Frame::Command { name, data }, len) = decode_frame(&frame).unwrap().unwrap() else {
            panic!("not a command");
        };
        assert_eq!((name.as_str(), len), ("READY", frame.len()));
        let props = parse_properties(&data).unwrap();
        assert_eq!(
            props,
            vec![
                ("Socket-Type".into(), b"DEALER".to_vec()),
                ("Identity".into(), vec![])
            ]
        );
    }

    #[test]
    fn malformed_frames_are_named() {
        assert!(
            decode_frame(&[0x80, 0])
                .unwrap_err()
                .0
                .contains("reserved bits")
        );
        let mut huge = vec![FLAG_LONG];
        huge.extend_from_slice(&(MAX_FRAME + 1).to_be_bytes());
        assert!(decode_frame(&huge).unwrap_err().0.contains("at most"));
        assert!(
            decode_frame(&[FLAG_COMMAND, 0])
                .unwrap_err()
                .0
                .contains("empty command")
        );
        assert!(
            parse_properties(&[11, b'S'])
                .unwrap_err()
                .0
                .contains("truncated")
        );
    }
}

#[cfg(test)]
mod socket_tests {
    use super::*;

    /// A peer as libzmq's DEALER or REQ: greeting, READY with its socket type, then `parts`.
    fn connect_and_send(path: &Path, socket_type: &[u8], parts: &[&[u8]]) -> UnixStream {
        let mut stream = UnixStream::connect(path).unwrap();
        let mut out = greeting().to_vec();
        out.extend(command_frame("READY", &[("Socket-Type", socket_type)]));
        for (i, part) in parts.iter().enumerate() {
            encode_frame(&mut out, part, i + 1 < parts.len());
        }
        stream.write_all(&out).unwrap();
        stream
    }

    /// Read the router's greeting and READY, then one message's frames.
    fn read_reply(stream: &mut UnixStream) -> Vec<Vec<u8>> {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut input = Vec::new();
        let mut frames = Vec::new();
        let mut chunk = [0u8; 4096];
        let mut greeted = false;
        loop {
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "the router closed the connection");
            input.extend_from_slice(&chunk[..n]);
            if !greeted && input.len() >= GREETING_LEN {
                check_greeting(&input[..GREETING_LEN]).unwrap();
                input.drain(..GREETING_LEN);
                greeted = true;
            }
            if !greeted {
                continue;
            }
            while let Some((frame, len)) = decode_frame(&input).unwrap() {
                input.drain(..len);
                match frame {
                    Frame::Command { name, data } => {
                        assert_eq!(name, "READY");
                        let props = parse_properties(&data).unwrap();
                        assert_eq!(props, vec![("Socket-Type".into(), b"ROUTER".to_vec())]);
                    }
                    Frame::Message { more, body } => {
                        frames.push(body);
                        if !more {
                            return frames;
                        }
                    }
                }
            }
        }
    }

    fn poll_until_requests(router: &mut Router, extra: &UnixStream) -> Vec<Request> {
        for _ in 0..100 {
            let polled = router
                .poll(extra.as_fd(), PollTimeout::from(100u16))
                .unwrap();
            if !polled.requests.is_empty() {
                return polled.requests;
            }
        }
        panic!("no request arrived");
    }

    #[test]
    fn a_dealer_request_is_answered_on_its_connection_and_a_req_gets_its_envelope_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let mut router = Router::bind(&path).unwrap();
        let (extra, _keep) = UnixStream::pair().unwrap();

        let mut dealer = connect_and_send(&path, b"DEALER", &[b"{\"command\": \"status\"}"]);
        let requests = poll_until_requests(&mut router, &extra);
        assert_eq!(requests.len(), 1);
        assert!(requests[0].envelope.is_empty());
        assert_eq!(requests[0].body, b"{\"command\": \"status\"}");
        router.reply(&requests[0], b"{\"status\": \"ok\"}");
        assert_eq!(
            read_reply(&mut dealer),
            vec![b"{\"status\": \"ok\"}".to_vec()]
        );

        let mut req = connect_and_send(&path, b"REQ", &[b"", b"hello"]);
        let requests = poll_until_requests(&mut router, &extra);
        assert_eq!(requests[0].envelope, vec![Vec::<u8>::new()]);
        router.reply(&requests[0], b"world");
        assert_eq!(read_reply(&mut req), vec![Vec::new(), b"world".to_vec()]);
        assert_eq!(router.peers(), 2);
    }

    #[test]
    fn a_peer_that_breaks_the_protocol_is_dropped_and_the_others_are_served() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let mut router = Router::bind(&path).unwrap();
        let (extra, _keep) = UnixStream::pair().unwrap();
        let mut bad = UnixStream::connect(&path).unwrap();
        bad.write_all(&[0u8; GREETING_LEN]).unwrap();
        let mut pub_socket = connect_and_send(&path, b"PUB", &[]);
        let mut good = connect_and_send(&path, b"DEALER", &[b"x"]);
        let requests = poll_until_requests(&mut router, &extra);
        router.reply(&requests[0], b"y");
        assert_eq!(read_reply(&mut good), vec![b"y".to_vec()]);
        for _ in 0..20 {
            router
                .poll(extra.as_fd(), PollTimeout::from(50u16))
                .unwrap();
        }
        assert_eq!(
            router.peers(),
            1,
            "the bad greeting and the PUB socket are dropped"
        );
        for closed in [&mut bad, &mut pub_socket] {
            closed
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut rest = Vec::new();
            assert!(
                closed.read_to_end(&mut rest).is_ok(),
                "the router closed its side"
            );
        }
    }

    #[test]
    fn a_socket_file_left_behind_is_replaced_and_removed_when_the_router_goes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        drop(UnixListener::bind(&path).unwrap()); // leaves the file
        let router = Router::bind(&path).unwrap();
        assert!(path.exists());
        drop(router);
        assert!(!path.exists());
        std::fs::write(&path, "not a socket").unwrap();
        assert!(
            Router::bind(&path).is_err(),
            "a regular file is not removed"
        );
    }
}
