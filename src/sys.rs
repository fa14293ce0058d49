//! Thin wrappers over the system calls monoio and std do not expose. Each
//! lives in its own submodule; unsafe code, when a call needs it, is allowed
//! only inside these files, with a `// SAFETY:` comment per block.

pub mod activation;
pub mod calls;
pub mod file;
pub mod ifaddrs;
pub mod malloc;
pub mod pipe;
pub mod rlimit;
pub mod scm;
pub mod socket;
pub mod sockopt;

pub use activation::systemd_listeners;
pub use ifaddrs::interface_addrs;
pub use rlimit::{is_descriptor_exhaustion, nofile, raise_nofile, NofileRaise};
pub use scm::{recv_fds, send_fds};
