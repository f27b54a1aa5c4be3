//! Reaching an AE that has no connection of its own: the simulated CSE dials the `ws://` URL in the
//! AE's `poa` (an edge's notify listener, say), as ACME does — but it keeps that connection for later
//! requests to the same node (`host:port`; TS-0020: one connection between two nodes), where ACME
//! opens one per NOTIFY. The edge must handle both. Answers that come back on it are read and dropped, as for
//! NOTIFYs over an AE's own connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use fastwebsockets::{FragmentCollectorRead, Frame, OpCode, Payload};
use tokio::sync::mpsc;

/// The CSE's outgoing connections, by `host:port`.
#[derive(Debug, Default)]
pub struct Dialer {
    conns: Mutex<HashMap<String, mpsc::UnboundedSender<Vec<u8>>>>,
}

impl Dialer {
    /// Queue a JSON primitive for the WebSocket server at `url` (`ws://host:port/path`), connecting
    /// first when there is no connection to it yet.
    pub fn send(self: &Arc<Self>, url: &str, origin: &str, bytes: Vec<u8>) {
        // The node is the URL's host and port (TS-0020: one connection between two nodes).
        let node = m2m_edge::wsurl::WsUrl::parse(url)
            .map_or_else(|_| url.to_string(), |u| format!("{}:{}", u.host, u.port));
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = match conns.get(&node) {
            Some(tx) => match tx.send(bytes) {
                Ok(()) => return,
                Err(mpsc::error::SendError(bytes)) => bytes,
            },
            None => bytes,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(bytes);
        conns.insert(node.clone(), tx.clone());
        let (me, url, origin) = (self.clone(), url.to_string(), origin.to_string());
        tokio::spawn(async move {
            if let Err(e) = run(&url, &origin, rx).await {
                eprintln!("m2m-loadgen cse: connection to {url} ended: {e}");
            }
            let mut conns = me.conns.lock().unwrap_or_else(|e| e.into_inner());
            if conns.get(&node).is_some_and(|t| t.same_channel(&tx)) {
                conns.remove(&node);
            }
        });
    }
}

async fn run(
    url: &str,
    origin: &str,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
) -> anyhow::Result<()> {
    let target = m2m_edge::wsurl::WsUrl::parse(url)?;
    anyhow::ensure!(!target.secure, "only ws:// poa URLs are dialed");
    let (authority, path) = (target.authority.as_str(), target.path.as_str());
    // A poa that never answers must not keep NOTIFYs queued for long.
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        tokio::net::TcpStream::connect((target.host.as_str(), target.port)),
    )
    .await
    .context("connect timed out")??;
    tcp.set_nodelay(true)?;
    let req = crate::connect::upgrade_request(path, authority, "oneM2M.json", Some(origin))?;
    let (ws, _) =
        fastwebsockets::handshake::client(&crate::connect::SpawnExecutor, req, tcp).await?;
    let (read, mut write) = ws.split(|s| {
        let (r, w) = tokio::io::split(s);
        (r, tokio::io::BufWriter::new(w))
    });
    let mut read = FragmentCollectorRead::new(read);
    let reader = tokio::spawn(async move {
        let mut ignore = |_: Frame<'_>| std::future::ready(Ok::<(), std::io::Error>(()));
        while let Ok(frame) = read.read_frame(&mut ignore).await {
            if frame.opcode == OpCode::Close {
                break;
            }
        }
    });
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(bytes) = next {
            write
                .write_frame(Frame::text(Payload::Owned(bytes)))
                .await?;
            next = rx.try_recv().ok();
        }
        write.flush().await?;
        if reader.is_finished() {
            break;
        }
    }
    reader.abort();
    Ok(())
}
