//! HTTP/1.1 framing, kept free of sockets: head parsing and its limits
//! ([`head`]), body framing and the chunked codec ([`body`]), which of a
//! sender's chunk framing may pass on unchanged ([`chunk_pass`]), the heads
//! regproxy writes itself ([`write`]), and their reason phrases
//! ([`reason`]).

pub mod body;
pub mod chunk_pass;
pub mod head;
pub mod reason;
pub mod write;
