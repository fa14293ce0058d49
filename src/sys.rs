//! Thin wrappers over the system calls monoio and std do not expose. Each
//! lives in its own submodule; unsafe code, when a call needs it, is allowed
//! only inside these files, with a `// SAFETY:` comment per block.

pub mod rlimit;

pub use rlimit::{raise_nofile, NofileRaise};
