//! The frames nodes exchange on their streams (ALPN `xinyong/1`): a versioned, length-limited
//! codec, sans-IO. Bytes go in through [`FrameDecoder::handle_bytes`] in whatever pieces the
//! transport delivers, whole frames come out of [`FrameDecoder::poll_frame`]; nothing here reads a
//! socket or a clock.
//!
//! A frame is a 12-byte header and a payload:
//!
//! ```text
//! version u8 (= 1) | kind u8 | flags u16 BE | request id u32 BE | payload length u32 BE | payload
//! ```
//!
//! The decoder refuses, with an error naming the cause, a version it does not speak, an unknown
//! kind, reserved flag bits, and a declared length over its limit, before buffering the payload:
//! a peer cannot make it allocate more than the limit. After an error the decoder is poisoned (the
//! stream has lost its framing) and the connection must be closed.

/// The protocol version this codec speaks.
pub const VERSION: u8 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 12;
/// Default largest payload (16 MiB); bulk data is sent as many frames.
pub const DEFAULT_MAX_PAYLOAD: u32 = 16 << 20;
/// Flag: the last frame of a bulk stream or of a multi-frame response.
pub const FLAG_END: u16 = 0x0001;
/// On the `Request` frame that opens a stream: the stream is an interactive channel (frames both
/// ways until either side ends it), not a bulk transfer.
pub const FLAG_CHANNEL: u16 = 0x0002;
const KNOWN_FLAGS: u16 = FLAG_END | FLAG_CHANNEL;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameKind {
    /// First frame of a connection: the sender's capabilities.
    Hello = 1,
    /// A request; the response carries the same request id.
    Request = 2,
    /// A response to a request.
    Response = 3,
    /// A refusal or failure for a request id, with a reason.
    Error = 4,
    /// A piece of a bulk transfer (share-up or return-flow batches).
    BulkData = 5,
    /// Acknowledgement of a bulk transfer up to the id in the payload.
    Ack = 6,
    /// Keep-alive probe.
    Ping = 7,
    /// Keep-alive answer.
    Pong = 8,
}

impl FrameKind {
    /// The kind of a wire byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Hello,
            2 => Self::Request,
            3 => Self::Response,
            4 => Self::Error,
            5 => Self::BulkData,
            6 => Self::Ack,
            7 => Self::Ping,
            8 => Self::Pong,
            _ => return None,
        })
    }
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What it carries.
    pub kind: FrameKind,
    /// Flags ([`FLAG_END`], [`FLAG_CHANNEL`]).
    pub flags: u16,
    /// The request it belongs to (0 for connection-level frames).
    pub request_id: u32,
    /// The payload.
    pub payload: Vec<u8>,
}

/// Errors of the codec. Each closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The peer speaks another protocol version.
    #[error("unsupported frame version {0}")]
    UnsupportedVersion(u8),
    /// A frame kind this version does not know.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// Flag bits that are reserved were set.
    #[error("reserved flag bits set: {0:#06x}")]
    ReservedFlags(u16),
    /// A frame longer than the limit.
    #[error("frame payload of {length} bytes exceeds the limit of {max}")]
    Oversized {
        /// Declared payload length.
        length: u32,
        /// The decoder's limit.
        max: u32,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({0} bytes pending)")]
    Truncated(usize),
    /// The decoder failed earlier; the stream has lost its framing.
    #[error("decoder already failed; close the connection")]
    Poisoned,
}

impl Frame {
    /// A frame with no flags.
    pub fn new(kind: FrameKind, request_id: u32, payload: Vec<u8>) -> Self {
        Self {
            kind,
            flags: 0,
            request_id,
            payload,
        }
    }

    /// Append the encoding of this frame to `out`, refusing payloads over `max_payload`.
    pub fn encode(&self, out: &mut Vec<u8>, max_payload: u32) -> Result<(), WireError> {
        let length = u32::try_from(self.payload.len()).unwrap_or(u32::MAX);
        if length > max_payload {
            return Err(WireError::Oversized {
                length,
                max: max_payload,
            });
        }
        if self.flags & !KNOWN_FLAGS != 0 {
            return Err(WireError::ReservedFlags(self.flags));
        }
        out.reserve(HEADER_LEN + self.payload.len());
        out.push(VERSION);
        out.push(self.kind as u8);
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&self.request_id.to_be_bytes());
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&self.payload);
        Ok(())
    }
}

/// An incremental frame decoder for one stream.
#[derive(Debug)]
pub struct FrameDecoder {
    buffer: Vec<u8>,
    start: usize,
    max_payload: u32,
    poisoned: bool,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PAYLOAD)
    }
}

impl FrameDecoder {
    /// A decoder that refuses payloads over `max_payload` bytes.
    pub fn new(max_payload: u32) -> Self {
        Self {
            buffer: Vec::new(),
            start: 0,
            max_payload,
            poisoned: false,
        }
    }

    /// Feed bytes as they arrive.
    pub fn handle_bytes(&mut self, data: &[u8]) {
        if self.start > 0 && self.start * 2 >= self.buffer.len() {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        self.buffer.extend_from_slice(data);
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or an error (after which the
    /// decoder is poisoned).
    pub fn poll_frame(&mut self) -> Result<Option<Frame>, WireError> {
        if self.poisoned {
            return Err(WireError::Poisoned);
        }
        match self.next_frame() {
            Err(e) => {
                self.poisoned = true;
                self.buffer = Vec::new();
                self.start = 0;
                Err(e)
            }
            ok => ok,
        }
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, WireError> {
        let pending = &self.buffer[self.start..];
        // Check each header field as soon as it has arrived.
        if let Some(&version) = pending.first()
            && version != VERSION
        {
            return Err(WireError::UnsupportedVersion(version));
        }
        if let Some(&kind) = pending.get(1)
            && FrameKind::from_byte(kind).is_none()
        {
            return Err(WireError::UnknownKind(kind));
        }
        if pending.len() < HEADER_LEN {
            return Ok(None);
        }
        let kind = FrameKind::from_byte(pending[1]).ok_or(WireError::UnknownKind(pending[1]))?;
        let flags = u16::from_be_bytes([pending[2], pending[3]]);
        if flags & !KNOWN_FLAGS != 0 {
            return Err(WireError::ReservedFlags(flags));
        }
        let request_id = u32::from_be_bytes([pending[4], pending[5], pending[6], pending[7]]);
        let length = u32::from_be_bytes([pending[8], pending[9], pending[10], pending[11]]);
        if length > self.max_payload {
            return Err(WireError::Oversized {
                length,
                max: self.max_payload,
            });
        }
        let total = HEADER_LEN + length as usize;
        if pending.len() < total {
            return Ok(None);
        }
        let payload = pending[HEADER_LEN..total].to_vec();
        self.start += total;
        Ok(Some(Frame {
            kind,
            flags,
            request_id,
            payload,
        }))
    }

    /// Declare the end of the stream: an error if a frame was cut off.
    pub fn finish(&self) -> Result<(), WireError> {
        match self.buffer.len() - self.start {
            0 => Ok(()),
            n => Err(WireError::Truncated(n)),
        }
    }
}
