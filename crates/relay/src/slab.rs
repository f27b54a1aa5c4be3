//! A table of live entries addressed by (slot, generation): slots are reused, generations make an id
//! of a removed entry harmless. Grows by a fixed step, not by doubling (memory per idle device).

/// Entries with generations and a free list.
#[derive(Debug)]
pub(crate) struct Slab<T> {
    entries: Vec<(u32, Option<T>)>,
    free: Vec<u32>,
    live: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }
}

impl<T> Slab<T> {
    /// Insert a value; returns its (index, generation).
    pub(crate) fn insert(&mut self, value: T) -> (u32, u32) {
        self.live += 1;
        if let Some(i) = self.free.pop() {
            let e = &mut self.entries[i as usize];
            e.0 = e.0.wrapping_add(1);
            e.1 = Some(value);
            return (i, e.0);
        }
        const STEP: usize = 1024;
        if self.entries.len() == self.entries.capacity() {
            self.entries.reserve_exact(STEP);
        }
        self.entries.push((1, Some(value)));
        ((self.entries.len() - 1) as u32, 1)
    }

    pub(crate) fn get(&self, index: u32, generation: u32) -> Option<&T> {
        match self.entries.get(index as usize)? {
            (g, Some(v)) if *g == generation => Some(v),
            _ => None,
        }
    }

    pub(crate) fn get_mut(&mut self, index: u32, generation: u32) -> Option<&mut T> {
        match self.entries.get_mut(index as usize)? {
            (g, Some(v)) if *g == generation => Some(v),
            _ => None,
        }
    }

    pub(crate) fn remove(&mut self, index: u32, generation: u32) -> Option<T> {
        let e = self.entries.get_mut(index as usize)?;
        if e.0 != generation || e.1.is_none() {
            return None;
        }
        self.free.push(index);
        self.live -= 1;
        e.1.take()
    }

    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Every live entry with its (index, generation), in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = ((u32, u32), &T)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, (g, v))| v.as_ref().map(|v| ((i as u32, *g), v)))
    }

    /// Every live entry's (index, generation).
    pub(crate) fn ids(&self) -> Vec<(u32, u32)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, (_, v))| v.is_some())
            .map(|(i, (g, _))| (i as u32, *g))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Slab;

    #[test]
    fn a_reused_slot_does_not_answer_to_the_old_id() {
        let mut s = Slab::default();
        let a = s.insert("a");
        assert_eq!(s.remove(a.0, a.1), Some("a"));
        let b = s.insert("b");
        assert_eq!(b.0, a.0, "the slot is reused");
        assert_eq!(s.get(a.0, a.1), None);
        assert_eq!(s.get(b.0, b.1), Some(&"b"));
        assert_eq!(s.len(), 1);
        assert_eq!(s.ids(), vec![b]);
    }
}
