//! The global allocator of the JS package's wasm: std's (dlmalloc), each
//! call preceded by a stack probe. dlmalloc keeps one state for the whole
//! instance; a call into it cut short by a stack overflow (a `RangeError`
//! in JS, which the JS layer catches and survives) would leave that state
//! half-updated, and every later allocation of every store in the instance
//! then traps ("memory access out of bounds": stress seeds 57-59,
//! tests/js/stress-found.test.mjs). The probe makes such a call fail
//! before dlmalloc has changed anything. An allocation is rare on the hot
//! paths (a set reserves amortized room; a hit never enters wasm), so the
//! probe's few hundred instructions are paid only where memory grows.

use std::alloc::{GlobalAlloc, Layout, System};

// A wider probe than a store call's: dlmalloc's deepest chain (malloc ->
// a chunk insert -> memory.grow) under Liftoff, with room to spare.
probe_frame!(
    w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w
    w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w
    w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w
    w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w
);

/// std's allocator, after a stack probe (see the module docs).
struct Probed;

// SAFETY: every method forwards to `System` unchanged; the probe before it
// either returns having changed nothing or traps before `System` runs.
unsafe impl GlobalAlloc for Probed {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        probe();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        probe();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        probe();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        probe();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Probed = Probed;

/// A probe as wide as this allocator's and a store call's together, for a
/// call that allocates or frees many times and must not be cut short
/// between two of them (an engine made or released:
/// `WasmEngines::create` and `release`): each allocation inside it, a few
/// frames deeper, then finds the room its own probe asks for.
mod deep {
    probe_frame!(
        w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w
        w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w
        w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w
        w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w
        w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w w
    );

    /// The probe (see the module above).
    #[inline(always)]
    pub(in crate::wasm) fn deep_probe() {
        probe();
    }
}

pub(super) use deep::deep_probe;
