//! Attachment bookkeeping beyond the rows themselves: each uploader's byte count (the quota), the
//! uploads never posted, and removing an attachment with its chunks, in the caller's transaction.

use redb::ReadableTable;

use super::{
    ATTACHMENT_CHUNKS, ATTACHMENT_CONVS, ATTACHMENT_REF_COUNTS, ATTACHMENT_REFS,
    ATTACHMENT_UNPOSTED, ATTACHMENT_USAGE, ATTACHMENTS, ReadTx, StoreError, WriteTx,
};

impl ReadTx {
    /// The (seq, attachment id) references of the entries in (`after`, `upto`], oldest first: at
    /// most `max` of them, whole entries only (an entry with more than `max` comes alone), and
    /// the seq they cover up to (`upto` when they are all).
    pub fn attachment_refs_in(
        &self,
        after: u64,
        upto: u64,
        max: usize,
    ) -> Result<(Vec<(u64, String)>, u64), StoreError> {
        let t = self.txn.open_table(ATTACHMENT_REFS)?;
        let mut out: Vec<(u64, String)> = Vec::new();
        let mut group: Vec<(u64, String)> = Vec::new();
        for r in t.range((after.saturating_add(1), "")..)? {
            let (k, _) = r?;
            let (seq, id) = k.value();
            if seq > upto {
                break;
            }
            if group.first().is_some_and(|(s, _)| *s != seq) {
                if !out.is_empty() && out.len() + group.len() > max {
                    let covered = out.last().map_or(after, |(s, _)| *s);
                    return Ok((out, covered));
                }
                out.append(&mut group);
            }
            group.push((seq, id.to_string()));
        }
        if !out.is_empty() && out.len() + group.len() > max {
            let covered = out.last().map_or(after, |(s, _)| *s);
            return Ok((out, covered));
        }
        out.append(&mut group);
        Ok((out, upto))
    }

    /// Bytes of attachments `user` uploaded that still exist.
    pub fn attachment_usage(&self, user: &str) -> Result<u64, StoreError> {
        let t = self.txn.open_table(ATTACHMENT_USAGE)?;
        let n = t.get(user)?.map_or(0, |v| v.value());
        Ok(n)
    }
}

impl WriteTx {
    /// Bytes of attachments `user` uploaded that still exist.
    pub fn attachment_usage(&self, user: &str) -> Result<u64, StoreError> {
        let t = self.txn.open_table(ATTACHMENT_USAGE)?;
        let n = t.get(user)?.map_or(0, |v| v.value());
        Ok(n)
    }

    /// Counts `bytes` more against `user`.
    pub fn add_attachment_usage(&mut self, user: &str, bytes: u64) -> Result<(), StoreError> {
        let n = self.attachment_usage(user)?.saturating_add(bytes);
        self.put(ATTACHMENT_USAGE, user, n)
    }

    /// Removes an attachment: its row, its chunks and its conversation counts, and frees its
    /// bytes from the uploader's usage. Returns whether it existed.
    pub fn remove_attachment(&mut self, id: &str) -> Result<bool, StoreError> {
        let Some(row) = ATTACHMENTS.get(self, id)? else {
            return Ok(false);
        };
        for n in 0..row.chunks {
            self.remove(ATTACHMENT_CHUNKS, (id, n))?;
        }
        let convs: Vec<String> = {
            let t = self.txn.open_table(ATTACHMENT_CONVS)?;
            let mut out = Vec::new();
            for r in t.range((id, "")..)? {
                let (k, _) = r?;
                let (a, c) = k.value();
                if a != id {
                    break;
                }
                out.push(c.to_string());
            }
            out
        };
        for c in &convs {
            self.remove(ATTACHMENT_CONVS, (id, c.as_str()))?;
        }
        self.remove(ATTACHMENT_UNPOSTED, (row.created_at_us, id))?;
        self.remove(ATTACHMENTS.def(), id)?;
        let left = self
            .attachment_usage(&row.uploader)?
            .saturating_sub(row.size);
        if left == 0 {
            self.remove(ATTACHMENT_USAGE, row.uploader.as_str())?;
        } else {
            self.put(ATTACHMENT_USAGE, row.uploader.as_str(), left)?;
        }
        Ok(true)
    }

    /// Notes a fresh upload as not yet posted.
    pub fn put_attachment_unposted(
        &mut self,
        uploaded_us: i64,
        id: &str,
    ) -> Result<(), StoreError> {
        self.put(ATTACHMENT_UNPOSTED, (uploaded_us, id), ())
    }

    /// A message references the attachment: it is no longer a candidate for collection.
    pub(crate) fn attachment_posted(&mut self, id: &str) -> Result<(), StoreError> {
        if let Some(row) = ATTACHMENTS.get(self, id)? {
            let key = (row.created_at_us, id);
            let present = self
                .txn
                .open_table(ATTACHMENT_UNPOSTED)?
                .get(key)?
                .is_some();
            if present {
                self.remove(ATTACHMENT_UNPOSTED, key)?;
            }
        }
        Ok(())
    }

    /// Up to `limit` uploads never posted that were uploaded before `before_us`, oldest first.
    pub fn unposted_before(&self, before_us: i64, limit: usize) -> Result<Vec<String>, StoreError> {
        let t = self.txn.open_table(ATTACHMENT_UNPOSTED)?;
        let mut out = Vec::new();
        for r in t.range((i64::MIN, "")..)? {
            let (k, _) = r?;
            let (ts, id) = k.value();
            if ts >= before_us || out.len() >= limit {
                break;
            }
            out.push(id.to_string());
        }
        Ok(out)
    }

    /// Whether the entry `seq` references any attachment (in the writer's transaction).
    pub fn has_attachment_refs(&self, seq: u64) -> Result<bool, StoreError> {
        let t = self.txn.open_table(ATTACHMENT_REFS)?;
        let mut r = t.range((seq, "")..)?;
        Ok(match r.next() {
            Some(row) => row?.0.value().0 == seq,
            None => false,
        })
    }

    /// The entry `seq` references the attachment `id` (each pair counted once).
    pub fn put_attachment_ref(&mut self, seq: u64, id: &str) -> Result<(), StoreError> {
        if self
            .txn
            .open_table(ATTACHMENT_REFS)?
            .get((seq, id))?
            .is_some()
        {
            return Ok(());
        }
        self.put(ATTACHMENT_REFS, (seq, id), ())?;
        let n = self
            .txn
            .open_table(ATTACHMENT_REF_COUNTS)?
            .get(id)?
            .map_or(0, |v| v.value());
        self.put(ATTACHMENT_REF_COUNTS, id, n.saturating_add(1))
    }

    /// The entry `seq` is gone for good: its references leave, and an attachment no entry
    /// references any more is removed with its chunks (freeing its uploader's quota).
    pub(crate) fn release_attachment_refs(&mut self, seq: u64) -> Result<(), StoreError> {
        let ids: Vec<String> = {
            let t = self.txn.open_table(ATTACHMENT_REFS)?;
            let mut out = Vec::new();
            for r in t.range((seq, "")..)? {
                let (k, _) = r?;
                let (s, id) = k.value();
                if s != seq {
                    break;
                }
                out.push(id.to_string());
            }
            out
        };
        for id in &ids {
            self.remove(ATTACHMENT_REFS, (seq, id.as_str()))?;
            let n = self
                .txn
                .open_table(ATTACHMENT_REF_COUNTS)?
                .get(id.as_str())?
                .map_or(0, |v| v.value());
            if n <= 1 {
                self.remove(ATTACHMENT_REF_COUNTS, id.as_str())?;
                self.remove_attachment(id)?;
            } else {
                self.put(ATTACHMENT_REF_COUNTS, id.as_str(), n - 1)?;
            }
        }
        Ok(())
    }
}
