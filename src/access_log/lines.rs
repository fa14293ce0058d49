//! A worker's pending log lines: a buffer with a hard size bound. A line
//! that would pass the bound is not kept, and the caller counts it as
//! dropped. Pure: no I/O, no clock.

/// Whole lines waiting for the writer, at most `limit` bytes of them.
#[derive(Debug)]
pub struct Lines {
    buf: String,
    limit: usize,
    /// Capacity of a fresh buffer after [`Lines::take`].
    fresh: usize,
}

impl Lines {
    pub fn new(limit: usize, fresh: usize) -> Lines {
        Lines {
            buf: String::with_capacity(fresh),
            limit,
            fresh,
        }
    }

    /// Appends the line `write` formats. Returns `false`, leaving the
    /// buffer as it was, when that would take it past the limit.
    pub fn push_with(&mut self, write: impl FnOnce(&mut String)) -> bool {
        let mark = self.buf.len();
        write(&mut self.buf);
        if self.buf.len() > self.limit {
            self.buf.truncate(mark);
            return false;
        }
        true
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Everything buffered, leaving an empty buffer.
    pub fn take(&mut self) -> String {
        std::mem::replace(&mut self.buf, String::with_capacity(self.fresh))
    }

    /// Puts back what [`Lines::take`] gave when the writer could not take
    /// it; lines pushed in between (none, on one thread) stay after it.
    pub fn restore(&mut self, mut taken: String) {
        taken.push_str(&self.buf);
        self.buf = taken;
    }
}

/// How many lines `buf` holds.
pub fn count(buf: &str) -> u64 {
    buf.bytes().filter(|&b| b == b'\n').count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(out: &mut String) {
        out.push_str("0123456789\n");
    }

    #[test]
    fn lines_past_the_limit_are_dropped_and_counted() {
        let mut l = Lines::new(25, 8);
        let mut dropped = 0;
        for _ in 0..5 {
            if !l.push_with(line) {
                dropped += 1;
            }
        }
        assert_eq!((l.len(), dropped), (22, 3), "two 11-byte lines fit in 25");
        // The writer could not take them: they stay, still bounded.
        let taken = l.take();
        assert!(l.is_empty());
        l.restore(taken);
        assert_eq!(l.len(), 22);
        assert!(!l.push_with(line));
        // Once the writer takes them, there is room again.
        assert_eq!(count(&l.take()), 2);
        assert!(l.push_with(line));
    }

    #[test]
    fn a_dropped_line_leaves_no_partial_bytes() {
        let mut l = Lines::new(15, 8);
        assert!(l.push_with(line));
        assert!(!l.push_with(|o| o.push_str("a longer line\n")));
        assert_eq!(l.take(), "0123456789\n");
    }
}
