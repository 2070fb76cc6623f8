//! What the integration tests share: extra frames (fragments, ICMP errors)
//! backed by vectors, as many as the test grants.

use mtugate_datapath::pipeline::ExtraFrames;

/// Size of every frame the tests hand the pipeline.
pub(crate) const FRAME: usize = 2048;

/// Extra frames backed by vectors: `free` of them, then none.
pub(crate) struct Frames {
    free: usize,
    pub(crate) out: Vec<Vec<u8>>,
    pending: Vec<u8>,
}

impl Frames {
    pub(crate) fn new(free: usize) -> Self {
        Frames {
            free,
            out: Vec::new(),
            pending: Vec::new(),
        }
    }
}

impl ExtraFrames for Frames {
    fn available(&self) -> usize {
        self.free
    }
    fn next_buf(&mut self) -> Option<&mut [u8]> {
        if self.free == 0 {
            return None;
        }
        self.pending = vec![0; FRAME];
        Some(&mut self.pending)
    }
    fn commit(&mut self, len: usize) {
        self.free -= 1;
        let mut f = std::mem::take(&mut self.pending);
        f.truncate(len);
        self.out.push(f);
    }
}
