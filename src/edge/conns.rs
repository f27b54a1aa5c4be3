//! Which runtime connection is which engine peer, both ways. A peer the engine closed or aborted is
//! detached at once, so the runtime's later `on_close` for that connection reaches no engine event.

use m2m_relay::{DeviceId, LinkId, NotifyId, Peer};
use m2m_rt::ConnId;
use m2m_rt::core::reserve_linear;

/// What a connection is to the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Peer(Peer),
    /// A connection to the admin listener; `local`: from a loopback address.
    Admin {
        local: bool,
    },
}

/// The two-way map of one core.
#[derive(Debug, Default)]
pub struct ConnMap {
    by_conn: Vec<Option<(ConnId, Role)>>,
    devices: Vec<Option<(u32, ConnId)>>,
    links: Vec<Option<(u32, ConnId)>>,
    tunnels: Vec<Option<(u32, ConnId)>>,
    notifies: Vec<Option<(u32, ConnId)>>,
}

fn put<T: Copy>(table: &mut Vec<Option<T>>, index: usize, value: Option<T>) {
    while table.len() <= index {
        reserve_linear(table);
        table.push(None);
    }
    table[index] = value;
}

impl ConnMap {
    fn side(&mut self, peer: Peer) -> (&mut Vec<Option<(u32, ConnId)>>, u32, u32) {
        match peer {
            Peer::Device(DeviceId { index, generation }) => (&mut self.devices, index, generation),
            Peer::Link(LinkId { index, generation }) => (&mut self.links, index, generation),
            Peer::Tunnel(DeviceId { index, generation }) => (&mut self.tunnels, index, generation),
            Peer::Notify(NotifyId { index, generation }) => (&mut self.notifies, index, generation),
        }
    }

    pub fn role(&self, conn: ConnId) -> Option<Role> {
        self.by_conn
            .get(conn.slot())?
            .filter(|(id, _)| *id == conn)
            .map(|(_, r)| r)
    }

    pub fn set_admin(&mut self, conn: ConnId, local: bool) {
        put(
            &mut self.by_conn,
            conn.slot(),
            Some((conn, Role::Admin { local })),
        );
    }

    /// `peer` is now carried by `conn`.
    pub fn bind(&mut self, peer: Peer, conn: ConnId) {
        put(
            &mut self.by_conn,
            conn.slot(),
            Some((conn, Role::Peer(peer))),
        );
        let (table, index, generation) = self.side(peer);
        put(table, index as usize, Some((generation, conn)));
    }

    pub fn conn(&self, peer: Peer) -> Option<ConnId> {
        let (table, index, generation) = match peer {
            Peer::Device(d) => (&self.devices, d.index, d.generation),
            Peer::Link(l) => (&self.links, l.index, l.generation),
            Peer::Tunnel(d) => (&self.tunnels, d.index, d.generation),
            Peer::Notify(n) => (&self.notifies, n.index, n.generation),
        };
        match table.get(index as usize)? {
            Some((g, conn)) if *g == generation => Some(*conn),
            _ => None,
        }
    }

    /// Forget `peer`'s connection; returns it.
    pub fn detach(&mut self, peer: Peer) -> Option<ConnId> {
        let conn = self.conn(peer)?;
        let (table, index, _) = self.side(peer);
        table[index as usize] = None;
        self.forget(conn);
        Some(conn)
    }

    /// Forget `conn` (gone); returns what it was.
    pub fn take(&mut self, conn: ConnId) -> Option<Role> {
        let role = self.role(conn)?;
        self.forget(conn);
        if let Role::Peer(peer) = role {
            let (table, index, generation) = self.side(peer);
            if table
                .get(index as usize)
                .is_some_and(|e| e.is_some_and(|(g, c)| g == generation && c == conn))
            {
                table[index as usize] = None;
            }
        }
        Some(role)
    }

    fn forget(&mut self, conn: ConnId) {
        if let Some(e) = self.by_conn.get_mut(conn.slot())
            && e.is_some_and(|(id, _)| id == conn)
        {
            *e = None;
        }
    }
}
