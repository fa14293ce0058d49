//! The few system calls monoio does not offer, each behind a safe function.
//! This is the only place `unsafe` is allowed; every block says why it holds.

pub mod pipe;
