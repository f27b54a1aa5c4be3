//! Live heap bytes, counted by a thin wrapper around the global allocator (the binaries' `heap-gauge`
//! feature), so that memory per idle device can be read exactly from a running edge
//! (`m2m_edge_heap_bytes` in `/metrics`) instead of
//! from RSS, which moves with what the allocator keeps or gives back and so wobbles by hundreds of
//! bytes per device. (Reading glibc's `malloc_stats()` through gdb did the same job before, but gdb
//! cannot call into a process on every machine.)
//!
//! The count is of the sizes asked for, not of the allocator's rounding: what the edge's own data
//! structures cost. Each of the first 63 threads owns a counter on its own cache line and updates
//! it with a plain load and store (no locked instruction); later threads share one counter with
//! atomic adds. A read sums them all. It is a feature, not always on: in one before/after run at
//! saturation the counting build used ~4 % more CPU per request, within that run's noise but not
//! worth paying for a gauge most deployments do not need.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering::Relaxed};

/// Wrap an allocator: `#[global_allocator] static A: Counting<MiMalloc> = Counting(MiMalloc);`.
#[derive(Debug)]
pub struct Counting<A>(pub A);

const STRIPES: usize = 64;
/// The counter threads share once every other one has an owner.
const SHARED: usize = STRIPES - 1;

/// One thread's live bytes and allocations made, on a cache line of their own.
#[repr(align(64))]
struct Stripe(AtomicIsize, AtomicUsize);

static COUNTS: [Stripe; STRIPES] =
    [const { Stripe(AtomicIsize::new(0), AtomicUsize::new(0)) }; STRIPES];
static INSTALLED: AtomicBool = AtomicBool::new(false);
static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // const-initialised and without a destructor: safe to touch from inside the allocator.
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_allocation() {
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

/// Allocations (including reallocations) made so far, over all threads; `None` as for
/// [`live_bytes`].
pub fn allocations() -> Option<u64> {
    if !INSTALLED.load(Relaxed) {
        return None;
    }
    Some(COUNTS.iter().map(|c| c.1.load(Relaxed) as u64).sum())
}

/// Allocations (including reallocations) this thread has made through [`Counting`]: tests count
/// what one code path allocates, unaffected by other threads.
pub fn thread_allocations() -> u64 {
    ALLOCATIONS.try_with(Cell::get).unwrap_or(0)
}

fn add(delta: isize, allocation: bool) {
    let index = STRIPE
        .try_with(|s| {
            let mut i = s.get();
            if i == usize::MAX {
                i = NEXT_STRIPE.fetch_add(1, Relaxed).min(SHARED);
                s.set(i);
            }
            i
        })
        .unwrap_or(SHARED);
    let Stripe(bytes, count) = &COUNTS[index];
    let more = usize::from(allocation);
    if index == SHARED {
        bytes.fetch_add(delta, Relaxed);
        count.fetch_add(more, Relaxed);
    } else {
        // Only this thread writes these counters: no read-modify-write race to guard against.
        bytes.store(bytes.load(Relaxed).wrapping_add(delta), Relaxed);
        count.store(count.load(Relaxed).wrapping_add(more), Relaxed);
    }
}

fn mark_installed() {
    // A load first: the flag's line stays shared between cores instead of being written each time.
    if !INSTALLED.load(Relaxed) {
        INSTALLED.store(true, Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the wrapped allocator; the wrapper only counts.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on as it is.
        let p = unsafe { self.0.alloc(layout) };
        if !p.is_null() {
            mark_installed();
            count_allocation();
            add(layout.size() as isize, true);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { self.0.alloc_zeroed(layout) };
        if !p.is_null() {
            mark_installed();
            count_allocation();
            add(layout.size() as isize, true);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { self.0.dealloc(ptr, layout) };
        add(-(layout.size() as isize), false);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count_allocation();
            add(new_size as isize - layout.size() as isize, true);
        }
        p
    }
}

/// Declare a binary's global allocator: mimalloc, wrapped in [`Counting`] when the *calling*
/// crate is built with its `heap-gauge` feature (the `cfg` is evaluated where the macro expands).
/// The binary must depend on `mimalloc`.
#[macro_export]
macro_rules! global_allocator {
    () => {
        #[cfg(feature = "heap-gauge")]
        #[global_allocator]
        static GLOBAL: $crate::heap::Counting<mimalloc::MiMalloc> =
            $crate::heap::Counting(mimalloc::MiMalloc);
        #[cfg(not(feature = "heap-gauge"))]
        #[global_allocator]
        static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
    };
}

/// Bytes allocated and not yet freed, over all threads; `None` when the running binary's global
/// allocator is not wrapped in [`Counting`] (the figure would be meaningless).
pub fn live_bytes() -> Option<u64> {
    if !INSTALLED.load(Relaxed) {
        return None;
    }
    let sum: isize = COUNTS.iter().map(|c| c.0.load(Relaxed)).sum();
    Some(sum.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_is_allocated_and_freed_across_threads() {
        // The test binary's allocator is not wrapped, so drive the wrapper directly.
        let a = Counting(std::alloc::System);
        let layout = Layout::from_size_align(1000, 8).unwrap();
        let before: isize = COUNTS.iter().map(|c| c.0.load(Relaxed)).sum();
        // SAFETY: valid non-zero layouts; each pointer is freed once with the layout it was given.
        let p = unsafe { a.alloc(layout) };
        let grown = unsafe { a.realloc(p, layout, 3000) };
        let here: isize = COUNTS.iter().map(|c| c.0.load(Relaxed)).sum();
        assert_eq!(here - before, 3000);
        // Freed on another thread: its stripe goes negative, the sum is still right.
        let addr = grown as usize;
        std::thread::spawn(move || unsafe {
            Counting(std::alloc::System)
                .dealloc(addr as *mut u8, Layout::from_size_align(3000, 8).unwrap())
        })
        .join()
        .unwrap();
        let after: isize = COUNTS.iter().map(|c| c.0.load(Relaxed)).sum();
        assert_eq!(after, before);
        assert!(live_bytes().is_some());
    }
}
