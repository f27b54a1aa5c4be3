//! permessage-deflate (RFC 7692): negotiation of its parameters and the per-message codec.
//!
//! Negotiation follows §7.1: the server walks the client's offers in order, declines any offer with
//! unknown, duplicated or out-of-range parameters (instead of failing the handshake) and accepts the
//! first one it can honour. The codec is `flate2` on the `zlib-rs` backend, which supports window
//! sizes below 15 bits. Inflation is bounded: a message whose inflated size passes the limit stops with
//! 1009 after at most `limit + 1` bytes were produced, so a compression bomb never grows memory.
//!
//! zlib cannot produce a raw deflate stream with an 8-bit window (it silently uses 9), so an offer
//! that asks *us* to compress with `server_max_window_bits=8` is declined.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::error::ProtocolError;
use crate::handshake::params::{HeaderParam, parse_extension_list};

/// The registered extension token.
pub const EXTENSION_NAME: &str = "permessage-deflate";
/// The four octets every compressed message loses at its end (§7.2.1) and regains before inflating.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What was agreed for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compressor after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// LZ77 window the server compresses with (9–15).
    pub server_max_window_bits: u8,
    /// LZ77 window the client compresses with (9–15).
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

/// Local preferences for negotiation, on either side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Reset the server's compressor per message (saves memory per connection, costs ratio).
    pub server_no_context_takeover: bool,
    /// Ask the client to reset its compressor per message.
    pub client_no_context_takeover: bool,
    /// Largest window the server compresses with (9–15).
    pub server_max_window_bits: u8,
    /// Largest window the client may compress with, when the client allows a limit (9–15).
    pub client_max_window_bits: u8,
    /// Compression level 0–9.
    pub level: u32,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            level: 6,
        }
    }
}

/// Parameters of one offer, after checking names, duplicates and ranges (§7.1).
#[derive(Debug, Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value; `Some(Some(n))`: offered with a limit.
    client_max_window_bits: Option<Option<u8>>,
}

fn window_bits(value: Option<&str>) -> Option<u8> {
    let v = value?;
    if v.is_empty() || v.len() > 2 || !v.bytes().all(|b| b.is_ascii_digit()) || v.starts_with('0') {
        return None;
    }
    let n: u8 = v.parse().ok()?;
    (8..=15).contains(&n).then_some(n)
}

fn parse_offer(params: &[HeaderParam<'_>]) -> Option<Offer> {
    let mut offer = Offer::default();
    for p in params {
        match p.name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover"
                if p.value.is_none() && !offer.server_no_context_takeover =>
            {
                offer.server_no_context_takeover = true;
            }
            "client_no_context_takeover"
                if p.value.is_none() && !offer.client_no_context_takeover =>
            {
                offer.client_no_context_takeover = true;
            }
            "server_max_window_bits" if offer.server_max_window_bits.is_none() => {
                offer.server_max_window_bits = Some(window_bits(p.value.as_deref())?);
            }
            "client_max_window_bits" if offer.client_max_window_bits.is_none() => {
                offer.client_max_window_bits = Some(match p.value.as_deref() {
                    None => None,
                    v => Some(window_bits(v)?),
                });
            }
            _ => return None,
        }
    }
    Some(offer)
}

/// Server side: pick the first acceptable permessage-deflate offer from the client's
/// `Sec-WebSocket-Extensions` values. Returns the agreed parameters and the response header value, or
/// `None` to run without compression.
pub fn negotiate_server(
    offers: &[&str],
    config: &DeflateConfig,
) -> Option<(DeflateParams, String)> {
    for ext in offers.iter().flat_map(|v| parse_extension_list(v)) {
        if !ext.name.eq_ignore_ascii_case(EXTENSION_NAME) {
            continue;
        }
        let Some(offer) = parse_offer(&ext.params) else {
            continue;
        };
        let server_bits = offer
            .server_max_window_bits
            .unwrap_or(15)
            .min(config.server_max_window_bits.clamp(9, 15));
        if server_bits < 9 {
            continue;
        }
        let client_bits = match offer.client_max_window_bits {
            None => 15,
            Some(limit) => limit
                .unwrap_or(15)
                .min(config.client_max_window_bits.clamp(9, 15)),
        };
        if client_bits < 9 {
            continue;
        }
        let params = DeflateParams {
            server_no_context_takeover: offer.server_no_context_takeover
                || config.server_no_context_takeover,
            client_no_context_takeover: offer.client_no_context_takeover
                || config.client_no_context_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        };
        let mut answer = String::from(EXTENSION_NAME);
        if params.server_no_context_takeover {
            answer.push_str("; server_no_context_takeover");
        }
        if params.client_no_context_takeover {
            answer.push_str("; client_no_context_takeover");
        }
        if offer.server_max_window_bits.is_some() || server_bits < 15 {
            answer.push_str(&format!("; server_max_window_bits={server_bits}"));
        }
        if offer.client_max_window_bits.is_some() && client_bits < 15 {
            answer.push_str(&format!("; client_max_window_bits={client_bits}"));
        }
        return Some((params, answer));
    }
    None
}

/// Client side: the offer to send for `config`.
pub fn client_offer(config: &DeflateConfig) -> String {
    let mut offer = String::from(EXTENSION_NAME);
    if config.server_no_context_takeover {
        offer.push_str("; server_no_context_takeover");
    }
    if config.client_no_context_takeover {
        offer.push_str("; client_no_context_takeover");
    }
    if config.server_max_window_bits < 15 {
        offer.push_str(&format!(
            "; server_max_window_bits={}",
            config.server_max_window_bits
        ));
    }
    offer.push_str("; client_max_window_bits");
    offer
}

/// Client side: check the server's answer to [`client_offer`] (§7.1) and return what was agreed.
pub fn accept_client(answer: &str, config: &DeflateConfig) -> Result<DeflateParams, String> {
    let mut exts = parse_extension_list(answer);
    if exts.len() != 1 || !exts[0].name.eq_ignore_ascii_case(EXTENSION_NAME) {
        return Err(answer.to_string());
    }
    let ext = exts.remove(0);
    let offer = parse_offer(&ext.params).ok_or_else(|| answer.to_string())?;
    let server_bits = offer.server_max_window_bits.unwrap_or(15);
    if server_bits > config.server_max_window_bits.max(9) {
        return Err(format!(
            "server_max_window_bits={server_bits} above the offered limit"
        ));
    }
    if config.server_no_context_takeover && !offer.server_no_context_takeover {
        return Err("server_no_context_takeover was required".into());
    }
    let client_bits = match offer.client_max_window_bits {
        None => 15,
        Some(None) => return Err("client_max_window_bits without a value".into()),
        Some(Some(8)) => return Err("client_max_window_bits=8 cannot be honoured by zlib".into()),
        Some(Some(n)) => n,
    };
    Ok(DeflateParams {
        server_no_context_takeover: offer.server_no_context_takeover,
        client_no_context_takeover: offer.client_no_context_takeover
            || config.client_no_context_takeover,
        server_max_window_bits: server_bits.max(9),
        client_max_window_bits: client_bits,
    })
}

/// Decompresses the messages of one direction.
#[derive(Debug)]
pub struct Inflater {
    inner: Decompress,
    reset_per_message: bool,
}

impl Inflater {
    /// An inflater for messages from the peer; `reset_per_message` is the peer's
    /// `*_no_context_takeover`.
    pub fn new(reset_per_message: bool) -> Self {
        // Any raw deflate stream with a window of at most 2^15 inflates with a 15-bit window.
        Self {
            inner: Decompress::new(false),
            reset_per_message,
        }
    }

    /// Inflate one frame's payload of a compressed message, appending to `out` without letting `out`
    /// grow past `limit` bytes. With `last`, the message's tail is added and the context handled.
    pub fn inflate(
        &mut self,
        payload: &[u8],
        last: bool,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), ProtocolError> {
        self.run(payload, out, limit)?;
        if last {
            self.run(&TAIL, out, limit)?;
            if self.reset_per_message {
                self.inner.reset(false);
            }
        }
        Ok(())
    }

    fn run(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), ProtocolError> {
        loop {
            if out.len() == out.capacity() {
                if out.len() > limit {
                    return Err(ProtocolError::MessageTooBig {
                        len: out.len() as u64,
                        limit,
                    });
                }
                let room = (limit + 1 - out.len())
                    .min(64 * 1024)
                    .max(input.len().min(256));
                out.reserve_exact(room);
            }
            let in_before = self.inner.total_in();
            let out_before = out.len();
            let status = self
                .inner
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|e| ProtocolError::Inflate(e.to_string()))?;
            if out.len() > limit {
                return Err(ProtocolError::MessageTooBig {
                    len: out.len() as u64,
                    limit,
                });
            }
            let consumed = (self.inner.total_in() - in_before) as usize;
            input = &input[consumed..];
            let produced = out.len() - out_before;
            if matches!(status, Status::StreamEnd) {
                // A block with BFINAL ends the deflate stream (§7.2.3.4); what follows (at least the
                // appended tail) starts a new one.
                self.inner.reset(false);
                if input.is_empty() {
                    return Ok(());
                }
                continue;
            }
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(());
            }
            if consumed == 0 && produced == 0 && out.len() < out.capacity() {
                return Err(ProtocolError::Inflate("stalled".into()));
            }
        }
    }
}

/// Compresses the messages of one direction.
#[derive(Debug)]
pub struct Deflater {
    inner: Compress,
    reset_per_message: bool,
}

impl Deflater {
    /// A compressor with the agreed window and our own `*_no_context_takeover`.
    pub fn new(level: u32, window_bits: u8, reset_per_message: bool) -> Self {
        Self {
            inner: Compress::new_with_window_bits(
                Compression::new(level.min(9)),
                false,
                window_bits.clamp(9, 15),
            ),
            reset_per_message,
        }
    }

    /// Compress a whole message into `out` (appended), without the 4-byte tail (§7.2.1).
    pub fn deflate(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(input.len() / 2 + 64);
            }
            let in_before = self.inner.total_in();
            self.inner
                .compress_vec(input, out, FlushCompress::Sync)
                .expect("deflate on owned buffers cannot fail");
            input = &input[(self.inner.total_in() - in_before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        if out.len() - start >= 4 && out.ends_with(&TAIL) {
            out.truncate(out.len() - 4);
        }
        if out.len() == start {
            // An empty message is the single empty stored block `00` (§7.2.3.6).
            out.push(0x00);
        }
        if self.reset_per_message {
            self.inner.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inflate_all(inf: &mut Inflater, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        inf.inflate(data, true, &mut out, 1 << 20).unwrap();
        out
    }

    #[test]
    fn rfc7692_7_2_3_1_hello_with_and_without_context() {
        // §7.2.3.1: "Hello" compressed is f2 48 cd c9 c9 07 00.
        let mut inf = Inflater::new(false);
        assert_eq!(
            inflate_all(&mut inf, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]),
            b"Hello"
        );
        // §7.2.3.2: the second "Hello" with context takeover is f2 00 11 00 00.
        assert_eq!(
            inflate_all(&mut inf, &[0xf2, 0x00, 0x11, 0x00, 0x00]),
            b"Hello"
        );
    }

    #[test]
    fn rfc7692_7_2_3_1_fragmented() {
        // §7.2.3.1: the same message split over two frames: f2 48 cd | c9 c9 07 00.
        let mut inf = Inflater::new(false);
        let mut out = Vec::new();
        inf.inflate(&[0xf2, 0x48, 0xcd], false, &mut out, 100)
            .unwrap();
        inf.inflate(&[0xc9, 0xc9, 0x07, 0x00], true, &mut out, 100)
            .unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn rfc7692_7_2_3_3_no_compression_block() {
        // §7.2.3.3: DEFLATE block with no compression: 00 05 00 fa ff 48 65 6c 6c 6f 00.
        let mut inf = Inflater::new(false);
        let data = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        assert_eq!(inflate_all(&mut inf, &data), b"Hello");
    }

    #[test]
    fn rfc7692_7_2_3_4_bfinal_block() {
        // §7.2.3.4: a block with BFINAL set: f3 48 cd c9 c9 07 00 00.
        let mut inf = Inflater::new(false);
        let data = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(inflate_all(&mut inf, &data), b"Hello");
        // The context starts over after BFINAL; the next message is independent.
        assert_eq!(
            inflate_all(&mut inf, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]),
            b"Hello"
        );
    }

    #[test]
    fn rfc7692_7_2_3_5_two_blocks() {
        // §7.2.3.5: two DEFLATE blocks in one message.
        let data = [
            0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
        ];
        assert_eq!(inflate_all(&mut Inflater::new(false), &data), b"Hello");
    }

    #[test]
    fn rfc7692_7_2_3_6_empty_message() {
        assert_eq!(inflate_all(&mut Inflater::new(false), &[0x00]), b"");
        let mut out = Vec::new();
        Deflater::new(6, 15, false).deflate(b"", &mut out);
        assert_eq!(inflate_all(&mut Inflater::new(false), &out), b"");
    }

    #[test]
    fn deflate_round_trip_with_and_without_takeover() {
        for (takeover_reset, bits) in [(false, 15), (true, 15), (false, 9), (true, 10)] {
            let mut def = Deflater::new(6, bits, takeover_reset);
            let mut inf = Inflater::new(takeover_reset);
            for i in 0..5 {
                let msg = format!(
                    "{{\"op\":1,\"rqi\":\"{i}\",\"pc\":{{\"m2m:cin\":{{\"con\":\"{}\"}}}}}}",
                    "x".repeat(i * 300)
                );
                let mut wire = Vec::new();
                def.deflate(msg.as_bytes(), &mut wire);
                assert_eq!(inflate_all(&mut inf, &wire), msg.as_bytes());
            }
        }
    }

    #[test]
    fn bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 10 << 20];
        let mut wire = Vec::new();
        Deflater::new(9, 15, false).deflate(&zeros, &mut wire);
        assert!(wire.len() < 20_000);
        let mut out = Vec::new();
        let err = Inflater::new(false)
            .inflate(&wire, true, &mut out, 64 * 1024)
            .unwrap_err();
        assert!(matches!(err, ProtocolError::MessageTooBig { .. }));
        assert_eq!(err.close_code().0, 1009);
        assert!(
            out.capacity() <= 64 * 1024 + 1 + 256,
            "capacity {}",
            out.capacity()
        );
    }

    #[test]
    fn garbage_does_not_inflate() {
        let mut out = Vec::new();
        let err = Inflater::new(false).inflate(&[0xff, 0xff, 0xff], true, &mut out, 1000);
        assert!(matches!(err, Err(ProtocolError::Inflate(_))));
    }

    #[test]
    fn server_negotiation_per_section_7_1() {
        let cfg = DeflateConfig::default();
        let (p, answer) = negotiate_server(&["permessage-deflate"], &cfg).unwrap();
        assert_eq!(p, DeflateParams::default());
        assert_eq!(answer, "permessage-deflate");

        let (p, answer) = negotiate_server(
            &["permessage-deflate; client_max_window_bits; server_max_window_bits=10"],
            &DeflateConfig {
                client_max_window_bits: 12,
                ..cfg
            },
        )
        .unwrap();
        assert_eq!(
            (p.server_max_window_bits, p.client_max_window_bits),
            (10, 12)
        );
        assert_eq!(
            answer,
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=12"
        );

        // A bad first offer is declined and the next one taken (§7.1: decline, not fail).
        let (p, _) = negotiate_server(
            &["permessage-deflate; server_max_window_bits=16, permessage-deflate; server_no_context_takeover"],
            &cfg,
        )
        .unwrap();
        assert!(p.server_no_context_takeover);

        for bad in [
            "permessage-deflate; unknown=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=08",
            "permessage-deflate; server_max_window_bits=8",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover=1",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(negotiate_server(&[bad], &cfg), None, "{bad}");
        }
        // A quoted value is allowed by the token/quoted-string grammar (§7.1 / RFC 6455 §9.1).
        let (p, _) =
            negotiate_server(&["permessage-deflate; client_max_window_bits=\"10\""], &cfg).unwrap();
        assert_eq!(p.client_max_window_bits, 10);
    }

    #[test]
    fn client_checks_the_answer() {
        let cfg = DeflateConfig::default();
        assert!(client_offer(&cfg).contains("client_max_window_bits"));
        let p = accept_client(
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
            &cfg,
        )
        .unwrap();
        assert_eq!(
            (p.server_max_window_bits, p.client_max_window_bits),
            (12, 12)
        );
        assert!(accept_client("permessage-deflate; foo", &cfg).is_err());
        assert!(accept_client("x-other", &cfg).is_err());
        let strict = DeflateConfig {
            server_max_window_bits: 10,
            ..cfg
        };
        assert!(accept_client("permessage-deflate; server_max_window_bits=12", &strict).is_err());
    }
}
