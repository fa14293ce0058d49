//! HTTP/1.1 framing, kept free of sockets: head parsing and its limits
//! ([`head`]), body framing and the chunked codec ([`body`]), and the heads
//! regproxy writes itself ([`write`]).

pub mod body;
pub mod head;
pub mod write;
