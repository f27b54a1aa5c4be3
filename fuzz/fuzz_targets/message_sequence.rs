//! A sequence of connection operations (messages, pings, fragment sizes, deflate on/off, read splits)
//! chosen by the fuzzer: whatever the sender writes, the receiver must give back exactly, whatever
//! the split of the byte stream.
#![no_main]
use libfuzzer_sys::fuzz_target;
use m2m_ws::{DeflateParams, Event, ReceiverLimits, Role, SenderConfig, endpoint};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let deflate = (data[0] & 1 == 1).then(|| DeflateParams {
        server_no_context_takeover: data[0] & 2 != 0,
        client_no_context_takeover: data[0] & 4 != 0,
        server_max_window_bits: 9 + (data[0] >> 5).min(6),
        client_max_window_bits: 9 + (data[1] & 7).min(6),
    });
    let fragment = usize::from(data[1] >> 3);
    let client_role = data[2] & 1 == 0;
    let (tx_role, rx_role) = if client_role { (Role::Client, Role::Server) } else { (Role::Server, Role::Client) };
    let cfg = SenderConfig { fragment_bytes: fragment, compress_min_bytes: usize::from(data[2] >> 4) };
    let limits = ReceiverLimits::default();
    let (_, mut tx) = endpoint(tx_role, deflate, limits, cfg, 6);
    let (mut rx, _) = endpoint(rx_role, deflate, limits, cfg, 6);

    // Build messages from the rest of the input: each chunk is one operation.
    let mut wire = Vec::new();
    let mut expect: Vec<(u8, Vec<u8>)> = Vec::new();
    for chunk in data[3..].chunks(17) {
        let kind = chunk[0] % 4;
        let body = &chunk[1..];
        match kind {
            0 => {
                let text = String::from_utf8_lossy(body).into_owned();
                tx.text(&text, &mut wire);
                expect.push((0, text.into_bytes()));
            }
            1 => {
                tx.binary(body, &mut wire);
                expect.push((1, body.to_vec()));
            }
            2 => {
                tx.ping(body, &mut wire);
                expect.push((2, body.to_vec()));
            }
            _ => {
                let repeated: Vec<u8> = body.iter().cycle().take(body.len() * 20).copied().collect();
                tx.binary(&repeated, &mut wire);
                expect.push((1, repeated));
            }
        }
    }
    // Feed with a split derived from the input.
    let step = usize::from(data[1] & 0x7) * 13 + 1;
    let mut got = Vec::new();
    let mut buf = Vec::new();
    for piece in wire.chunks(step) {
        buf.extend_from_slice(piece);
        while let Some((event, used)) = rx.read(&mut buf).expect("sender output must read back") {
            match event {
                Event::Text(t) => got.push((0, t.as_bytes().to_vec())),
                Event::Binary(b) => got.push((1, b.to_vec())),
                Event::Ping(p) => got.push((2, p.to_vec())),
                Event::Pong(_) | Event::Close(_) => unreachable!(),
                Event::Fragment => {}
            }
            buf.drain(..used);
        }
    }
    assert!(buf.is_empty());
    assert_eq!(got, expect);
});
