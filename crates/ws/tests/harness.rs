//! In-memory client↔server harness: what one side's `Sender` writes, the other side's `Receiver`
//! reads, with the byte stream cut at every boundary, and with faults injected into the stream.
//! No sockets, no sleeps.

use m2m_ws::frame::write_frame;
use m2m_ws::{
    CloseCode, DeflateParams, Event, OpCode, ProtocolError, Receiver, ReceiverLimits, Role, Sender,
    SenderConfig, endpoint,
};

/// An owned copy of an event, to compare across runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

/// Feed `wire` to `rx` in the given chunks, as a runtime would: append to a buffer, read until
/// `Ok(None)`, drop what was consumed.
fn drive(rx: &mut Receiver, wire: &[u8], chunks: &[usize]) -> Result<Vec<Got>, ProtocolError> {
    let mut got = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut cuts: Vec<usize> = chunks.to_vec();
    cuts.push(wire.len());
    for cut in cuts {
        let cut = cut.min(wire.len());
        if cut < fed {
            continue;
        }
        buf.extend_from_slice(&wire[fed..cut]);
        fed = cut;
        while let Some((event, used)) = rx.read(&mut buf)? {
            match event {
                Event::Text(t) => got.push(Got::Text(t.to_string())),
                Event::Binary(b) => got.push(Got::Binary(b.to_vec())),
                Event::Ping(p) => got.push(Got::Ping(p.to_vec())),
                Event::Pong(p) => got.push(Got::Pong(p.to_vec())),
                Event::Close(c) => got.push(Got::Close(c.code.map(|c| c.0), c.reason.to_string())),
                Event::Fragment => {}
            }
            buf.drain(..used);
        }
    }
    assert!(buf.is_empty(), "bytes left over: {}", buf.len());
    Ok(got)
}

fn pair(
    deflate: Option<DeflateParams>,
    fragment: usize,
    limits: ReceiverLimits,
) -> (Sender, Receiver) {
    let cfg = SenderConfig {
        fragment_bytes: fragment,
        compress_min_bytes: 0,
    };
    let (_, client_tx) = endpoint(Role::Client, deflate, limits, cfg, 6);
    let (server_rx, _) = endpoint(Role::Server, deflate, limits, cfg, 6);
    (client_tx, server_rx)
}

fn conversation(tx: &mut Sender) -> (Vec<u8>, Vec<Got>) {
    let mut wire = Vec::new();
    let mut expect = Vec::new();
    let req = r#"{"op":1,"to":"cse-in/meter01","fr":"Cmeter01","rqi":"q-0002","rvi":"3","ty":3,"pc":{"m2m:cnt":{"rn":"readings","lbl":["κόσμε"]}}}"#;
    tx.text(req, &mut wire);
    expect.push(Got::Text(req.into()));
    tx.ping(b"hb", &mut wire);
    expect.push(Got::Ping(b"hb".to_vec()));
    let cbor: Vec<u8> = (0..600u32).map(|i| (i * 31 % 251) as u8).collect();
    tx.binary(&cbor, &mut wire);
    expect.push(Got::Binary(cbor));
    tx.text("", &mut wire);
    expect.push(Got::Text(String::new()));
    tx.pong(b"", &mut wire);
    expect.push(Got::Pong(Vec::new()));
    tx.close(CloseCode::NORMAL, "bye ✓", &mut wire);
    expect.push(Got::Close(Some(1000), "bye ✓".into()));
    (wire, expect)
}

#[test]
fn every_split_of_every_configuration() {
    let deflates = [
        None,
        Some(DeflateParams::default()),
        Some(DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 10,
            client_max_window_bits: 9,
        }),
    ];
    for deflate in deflates {
        for fragment in [0, 1, 7, 64] {
            let (mut tx, _) = pair(deflate, fragment, ReceiverLimits::default());
            let (wire, expect) = conversation(&mut tx);
            // One chunk, byte by byte, and two chunks cut at every boundary.
            let (_, mut rx) = pair(deflate, fragment, ReceiverLimits::default());
            assert_eq!(drive(&mut rx, &wire, &[]).unwrap(), expect);
            let (_, mut rx) = pair(deflate, fragment, ReceiverLimits::default());
            let bytes: Vec<usize> = (1..wire.len()).collect();
            assert_eq!(drive(&mut rx, &wire, &bytes).unwrap(), expect);
            for cut in 1..wire.len() {
                let (_, mut rx) = pair(deflate, fragment, ReceiverLimits::default());
                assert_eq!(
                    drive(&mut rx, &wire, &[cut]).unwrap(),
                    expect,
                    "{deflate:?} frag {fragment} cut {cut}"
                );
            }
        }
    }
}

#[test]
fn server_to_client_direction() {
    let deflate = Some(DeflateParams::default());
    let (_, mut server_tx) = endpoint(
        Role::Server,
        deflate,
        ReceiverLimits::default(),
        SenderConfig::default(),
        6,
    );
    let (mut client_rx, _) = endpoint(
        Role::Client,
        deflate,
        ReceiverLimits::default(),
        SenderConfig::default(),
        6,
    );
    let (wire, expect) = conversation(&mut server_tx);
    for cut in 0..wire.len() {
        let (mut rx, _) = endpoint(
            Role::Client,
            deflate,
            ReceiverLimits::default(),
            SenderConfig::default(),
            6,
        );
        assert_eq!(drive(&mut rx, &wire, &[cut]).unwrap(), expect);
    }
    assert_eq!(drive(&mut client_rx, &wire, &[]).unwrap(), expect);
}

#[test]
fn control_frames_interleave_with_fragments() {
    // §5.4: control frames may be injected in the middle of a fragmented message.
    let key = Some([1, 2, 3, 4]);
    let mut wire = Vec::new();
    write_frame(&mut wire, false, false, OpCode::Text, key, "κό".as_bytes());
    write_frame(&mut wire, true, false, OpCode::Ping, key, b"p1");
    // Split a multi-byte character across fragments.
    let rest = "σμε".as_bytes();
    write_frame(
        &mut wire,
        false,
        false,
        OpCode::Continuation,
        key,
        &rest[..1],
    );
    write_frame(&mut wire, true, false, OpCode::Pong, key, b"p2");
    write_frame(
        &mut wire,
        true,
        false,
        OpCode::Continuation,
        key,
        &rest[1..],
    );
    let expect = vec![
        Got::Ping(b"p1".to_vec()),
        Got::Pong(b"p2".to_vec()),
        Got::Text("κόσμε".into()),
    ];
    for cut in 0..wire.len() {
        let mut rx = Receiver::new(Role::Server, ReceiverLimits::default(), None);
        assert_eq!(drive(&mut rx, &wire, &[cut]).unwrap(), expect);
    }
}

/// Run a faulty stream through a fresh server receiver and return the close code it produces.
fn fault(wire: &[u8], limits: ReceiverLimits, deflate: bool) -> u16 {
    let inflater = deflate.then(|| m2m_ws::Inflater::new(false));
    let mut rx = Receiver::new(Role::Server, limits, inflater);
    drive(&mut rx, wire, &[]).unwrap_err().close_code().0
}

#[test]
fn injected_faults_map_to_close_codes() {
    let key = Some([9, 9, 9, 9]);
    let limits = ReceiverLimits::default();
    let frame = |fin, rsv1, op, payload: &[u8]| {
        let mut w = Vec::new();
        write_frame(&mut w, fin, rsv1, op, key, payload);
        w
    };
    // Bad RSV: RSV1 without deflate, RSV2 always.
    assert_eq!(
        fault(&frame(true, true, OpCode::Text, b"x"), limits, false),
        1002
    );
    let mut rsv2 = frame(true, false, OpCode::Text, b"x");
    rsv2[0] |= 0x20;
    assert_eq!(fault(&rsv2, limits, true), 1002);
    // Reserved opcode.
    let mut bad_op = frame(true, false, OpCode::Text, b"x");
    bad_op[0] = (bad_op[0] & 0xF0) | 0x3;
    assert_eq!(fault(&bad_op, limits, false), 1002);
    // Unmasked client frame.
    let mut unmasked = Vec::new();
    write_frame(&mut unmasked, true, false, OpCode::Text, None, b"x");
    assert_eq!(fault(&unmasked, limits, false), 1002);
    // Bad UTF-8, single frame and inside a fragmented message (fails on the bad fragment).
    assert_eq!(
        fault(
            &frame(true, false, OpCode::Text, &[0xce, 0xba, 0xff]),
            limits,
            false
        ),
        1007
    );
    let mut frag = frame(false, false, OpCode::Text, b"ok");
    frag.extend(frame(
        false,
        false,
        OpCode::Continuation,
        &[0xed, 0xa0, 0x80],
    ));
    let mut rx = Receiver::new(Role::Server, limits, None);
    assert_eq!(
        drive(&mut rx, &frag, &[]).unwrap_err(),
        ProtocolError::InvalidUtf8
    );
    // Truncated sequence at the end of the message.
    let mut trunc = frame(false, false, OpCode::Text, b"ok");
    trunc.extend(frame(true, false, OpCode::Continuation, &[0xe2, 0x82]));
    assert_eq!(fault(&trunc, limits, false), 1007);
    // Oversized frame is refused from its header alone, before its payload arrives.
    let small = ReceiverLimits {
        max_frame_bytes: 100,
        ..limits
    };
    let big = frame(true, false, OpCode::Binary, &[0; 101]);
    assert_eq!(fault(&big[..8], small, false), 1009);
    // Oversized message across fragments.
    let small_msg = ReceiverLimits {
        max_message_bytes: 100,
        ..limits
    };
    let mut parts = frame(false, false, OpCode::Binary, &[0; 60]);
    parts.extend(frame(true, false, OpCode::Continuation, &[0; 60]));
    assert_eq!(fault(&parts, small_msg, false), 1009);
    // Bad close frames.
    assert_eq!(
        fault(&frame(true, false, OpCode::Close, &[0x03]), limits, false),
        1002
    );
    assert_eq!(
        fault(
            &frame(true, false, OpCode::Close, &1006u16.to_be_bytes()),
            limits,
            false
        ),
        1002
    );
    assert_eq!(
        fault(
            &frame(true, false, OpCode::Close, &[0x03, 0xe8, 0xc0]),
            limits,
            false
        ),
        1007
    );
    // Continuation without a start, and a new message inside a fragmented one.
    assert_eq!(
        fault(
            &frame(true, false, OpCode::Continuation, b"x"),
            limits,
            false
        ),
        1002
    );
    let mut nested = frame(false, false, OpCode::Text, b"a");
    nested.extend(frame(true, false, OpCode::Text, b"b"));
    assert_eq!(fault(&nested, limits, false), 1002);
    // Anything after a close frame.
    let mut after = frame(true, false, OpCode::Close, &1000u16.to_be_bytes());
    after.extend(frame(true, false, OpCode::Text, b"late"));
    assert_eq!(fault(&after, limits, false), 1002);
    // A compressed message that does not inflate, and a bomb.
    assert_eq!(
        fault(
            &frame(true, true, OpCode::Binary, &[0xff, 0xee, 0xdd]),
            limits,
            true
        ),
        1002
    );
    let mut bomb_body = Vec::new();
    m2m_ws::Deflater::new(9, 15, false).deflate(&vec![b'a'; 4 << 20], &mut bomb_body);
    assert_eq!(
        fault(&frame(true, true, OpCode::Text, &bomb_body), limits, true),
        1009
    );
}

#[test]
fn single_frame_messages_are_not_copied() {
    let mut wire = Vec::new();
    write_frame(
        &mut wire,
        true,
        false,
        OpCode::Binary,
        Some([5, 6, 7, 8]),
        b"payload",
    );
    let start = wire.as_ptr() as usize;
    let mut rx = Receiver::new(Role::Server, ReceiverLimits::default(), None);
    let (event, _) = rx.read(&mut wire).unwrap().unwrap();
    let Event::Binary(data) = event else {
        panic!("binary expected")
    };
    assert_eq!(data, b"payload");
    let at = data.as_ptr() as usize;
    assert!(
        at >= start && at < start + 16,
        "the message must be a slice of the input"
    );
    assert_eq!(rx.buffered_capacity(), 0);
}
