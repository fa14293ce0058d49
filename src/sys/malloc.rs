//! Giving freed heap memory back to the kernel.
//!
//! glibc keeps what a burst of connections freed in its arenas: after a
//! flood of 20,000 connections closes, RSS would otherwise stay at the
//! flood's peak. `malloc_trim(0)` returns every free page of every arena
//! (`MADV_DONTNEED`), not just the top of the main heap. Nothing in the
//! Rust crates we use offers it.
#![allow(unsafe_code)]

/// Returns free heap pages to the kernel; `true` if any were. A no-op
/// where the C library is not glibc.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes a plain integer, touches only the
        // allocator's own state under its arena locks, and is safe to call
        // from any thread at any time (glibc MT-Safe).
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
