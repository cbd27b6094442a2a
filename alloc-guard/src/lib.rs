//! # gatehouse-alloc-guard
//!
//! A global allocator that keeps one class of malformed input from killing the process.
//!
//! `kafka-protocol` (0.18) decodes an array by reading its length from the wire and calling
//! `Vec::with_capacity(length)` before it reads a single element (kafka-protocol-rs PRs #152 /
//! #200, open upstream). A request of a few bytes can declare billions of elements; the
//! allocator cannot satisfy the request and Rust aborts the process — a denial of service by
//! any authenticated client. The decode itself would fail a moment later (the elements are not
//! there), so the memory is never touched.
//!
//! [`Guard`] serves every allocation of at least [`HUGE`] bytes with an anonymous
//! `mmap(MAP_NORESERVE)`: the kernel hands out address space without committing memory or
//! charging it against overcommit, the decoder fails cleanly, and the mapping is unmapped when
//! the vector is dropped. Everything smaller goes to the system allocator unchanged. Gatehouse
//! never needs a single gigabyte-sized allocation (requests are capped at 100 MiB), so nothing
//! legitimate takes the `mmap` path; if something ever touches such a mapping beyond memory,
//! the kernel's OOM handling applies as it would anyway. Unix only; elsewhere it is the system
//! allocator.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations of this many bytes or more are mapped, not allocated.
pub const HUGE: usize = 1 << 30;

/// The guarding allocator; install with `#[global_allocator] static A: Guard = Guard;`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Guard;

fn mapped(layout: Layout) -> bool {
    cfg!(unix) && layout.size() >= HUGE && layout.align() <= 4096
}

#[cfg(unix)]
fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint has no preconditions; the
    // result is checked against MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

#[cfg(not(unix))]
fn map(_size: usize) -> *mut u8 {
    std::ptr::null_mut()
}

#[cfg(unix)]
fn unmap(ptr: *mut u8, size: usize) {
    // SAFETY: `ptr`/`size` describe a mapping made by `map` (the caller passes the layout it
    // was allocated with), unmapped exactly once.
    unsafe {
        libc::munmap(ptr.cast(), size);
    }
}

#[cfg(not(unix))]
fn unmap(_ptr: *mut u8, _size: usize) {}

// SAFETY: every pointer handed out is either from `System` (and returned to it) or from an
// anonymous mapping of at least `layout.size()` bytes, page-aligned (so any alignment up to
// 4096 holds), zero-filled, and unmapped on `dealloc` with the same size.
unsafe impl GlobalAlloc for Guard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if mapped(layout) {
            return map(layout.size());
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if mapped(layout) {
            // Anonymous mappings are zero-filled.
            return map(layout.size());
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if mapped(layout) {
            unmap(ptr, layout.size());
            return;
        }
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if !mapped(layout) && !mapped(new_layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: `new_layout` is valid (checked above) and non-zero sized (>= HUGE or from
        // a non-zero old size grown by the caller).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the copied length and do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static A: Guard = Guard;

    #[test]
    fn absurd_capacities_do_not_abort() {
        // 64 GiB of capacity, never touched.
        let v: Vec<[u8; 64]> = Vec::with_capacity(1 << 30);
        assert!(v.capacity() >= 1 << 30);
        drop(v);
        let mut small = Vec::with_capacity(16);
        small.extend_from_slice(b"still works");
        assert_eq!(&small[..5], b"still");
    }

    #[test]
    fn growing_across_the_threshold_keeps_contents() {
        let mut v: Vec<u8> = vec![7; 1024];
        v.reserve(HUGE);
        assert_eq!(v.len(), 1024);
        assert!(v.iter().all(|b| *b == 7));
        v.shrink_to_fit();
        assert_eq!(v.capacity(), 1024);
    }
}
