//! The unsynced part of one file: dirty pages and a pending size, held in memory until fsync
//! writes them to the backing file. Dropping an `Overlay` is what a power cut does to a file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

pub const PAGE: u64 = 4096;

/// What the file looks like to readers, on top of the backing file, which holds only synced data.
pub struct Overlay {
    /// Page index -> the page's full current content (`PAGE` bytes; bytes past `size` are zero).
    pages: BTreeMap<u64, Vec<u8>>,
    /// The logical size readers see.
    size: u64,
    /// Backing bytes at or past this offset are stale (the file was shrunk since the last sync)
    /// and read as zeros. Always `<= size`.
    valid_to: u64,
}

impl Overlay {
    /// An overlay with no changes yet over a backing file of `backing_len` bytes.
    pub fn new(backing_len: u64) -> Self {
        Self {
            pages: BTreeMap::new(),
            size: backing_len,
            valid_to: backing_len,
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes held in memory that a power cut would lose.
    pub fn pending_bytes(&self) -> u64 {
        self.pages.len() as u64 * PAGE
    }

    /// Reads `len` bytes at `offset`, short at the logical end of file.
    pub fn read(&self, backing: &File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let end = self.size.min(offset.saturating_add(len));
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; (end - offset) as usize];
        let from_backing = self.valid_to.min(end).saturating_sub(offset) as usize;
        read_upto(backing, offset, &mut buf[..from_backing])?;
        for (&index, page) in self.pages.range(offset / PAGE..=(end - 1) / PAGE) {
            let start = (index * PAGE).max(offset);
            let stop = ((index + 1) * PAGE).min(end);
            buf[(start - offset) as usize..(stop - offset) as usize].copy_from_slice(
                &page[(start - index * PAGE) as usize..(stop - index * PAGE) as usize],
            );
        }
        Ok(buf)
    }

    pub fn write(&mut self, backing: &File, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = offset + data.len() as u64;
        let mut at = offset;
        while at < end {
            let index = at / PAGE;
            let page = match self.pages.entry(index) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let mut page = vec![0u8; PAGE as usize];
                    let start = index * PAGE;
                    let valid = self.valid_to.min(start + PAGE).saturating_sub(start) as usize;
                    read_upto(backing, start, &mut page[..valid])?;
                    e.insert(page)
                }
            };
            let stop = ((index + 1) * PAGE).min(end);
            let in_page = (at - index * PAGE) as usize;
            page[in_page..in_page + (stop - at) as usize]
                .copy_from_slice(&data[(at - offset) as usize..(stop - offset) as usize]);
            at = stop;
        }
        self.size = self.size.max(end);
        Ok(())
    }

    /// `ftruncate`: a shrink forgets the pages past the end, so a later growth reads zeros.
    pub fn truncate(&mut self, size: u64) {
        if size < self.size {
            self.pages.retain(|&index, _| index * PAGE < size);
            if let Some(page) = self.pages.get_mut(&(size / PAGE)) {
                page[(size % PAGE) as usize..].fill(0);
            }
            self.valid_to = self.valid_to.min(size);
        }
        self.size = size;
    }

    /// Makes the overlay durable: the backing file gets every pending change, then fsync.
    pub fn sync(&self, backing: &File) -> io::Result<()> {
        backing.set_len(self.valid_to)?;
        self.write_pages(backing, |_| true)?;
        backing.set_len(self.size)?;
        backing.sync_all()
    }

    /// A torn power cut: only the pages `keep` picks reach the backing file, and nothing is
    /// synced. A page is written whole or not at all.
    pub fn write_some(&self, backing: &File, keep: impl FnMut(u64) -> bool) -> io::Result<()> {
        self.write_pages(backing, keep)
    }

    fn write_pages(&self, backing: &File, mut keep: impl FnMut(u64) -> bool) -> io::Result<()> {
        for (&index, page) in &self.pages {
            let len = self.size.saturating_sub(index * PAGE).min(PAGE) as usize;
            if keep(index) {
                backing.write_all_at(&page[..len], index * PAGE)?;
            }
        }
        Ok(())
    }
}

/// Fills `buf` from `offset`; past the backing file's end it stays zero.
fn read_upto(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
