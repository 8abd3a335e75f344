//! The simulator's lines as a byte stream, for readers of NDJSON (the
//! vault's collection path reads `io::Read`, the simulator yields lines).

/// Reads an iterator of lines as newline-terminated bytes, holding one line
/// at a time.
pub struct LinesReader<I> {
    lines: I,
    cur: Vec<u8>,
    pos: usize,
}

impl<I: Iterator<Item = String>> LinesReader<I> {
    pub fn new(lines: I) -> Self {
        LinesReader {
            lines,
            cur: Vec::new(),
            pos: 0,
        }
    }
}

impl<I: Iterator<Item = String>> std::io::Read for LinesReader<I> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.cur.len() {
            match self.lines.next() {
                Some(l) => {
                    self.cur = l.into_bytes();
                    self.cur.push(b'\n');
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let rest = self.cur.get(self.pos..).unwrap_or_default();
        let n = buf.len().min(rest.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}
