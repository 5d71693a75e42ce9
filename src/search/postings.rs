//! Posting blocks: the seqs of one token MAC, ascending, delta-varint coded, at most
//! [`BLOCK_LEN`] per block, each block sealed (AES-256-GCM under the data key) before it is stored.

use crate::log::Log;
use crate::store::{SealError, StoreError};

/// Postings per block: a block is rewritten while it fills, then a new one starts.
pub const BLOCK_LEN: usize = 512;
/// The version byte of a block's plaintext.
const BLOCK_VERSION: u8 = 1;

/// A block that does not decode (a bug or damage: its seal opened).
#[derive(Debug, thiserror::Error)]
#[error("a search posting block is malformed")]
pub struct MalformedBlock;

/// The AAD of a block: binds it to its token MAC and first seq.
pub fn aad(mac: &[u8], first: u64) -> Vec<u8> {
    format!("search/{}/{first}", hex::encode(mac)).into_bytes()
}

/// Plaintext of a block: version | varint(seq[i] - seq[i-1]) for i >= 1; seq[0] is the key.
pub fn encode(seqs: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + seqs.len() * 2);
    out.push(BLOCK_VERSION);
    for w in seqs.windows(2) {
        let mut d = w[1] - w[0];
        loop {
            let b = (d & 0x7f) as u8;
            d >>= 7;
            if d == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
    }
    out
}

pub fn decode(first: u64, plain: &[u8]) -> Result<Vec<u64>, MalformedBlock> {
    let (&v, mut rest) = plain.split_first().ok_or(MalformedBlock)?;
    if v != BLOCK_VERSION {
        return Err(MalformedBlock);
    }
    let mut out = vec![first];
    let mut cur = first;
    while !rest.is_empty() {
        let mut d: u64 = 0;
        let mut shift = 0;
        loop {
            let (&b, r) = rest.split_first().ok_or(MalformedBlock)?;
            rest = r;
            if shift > 63 {
                return Err(MalformedBlock);
            }
            d |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        cur = cur.checked_add(d).ok_or(MalformedBlock)?;
        out.push(cur);
    }
    Ok(out)
}

/// Why postings could not be written.
#[derive(Debug, thiserror::Error)]
pub enum AppendPostingsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Malformed(#[from] MalformedBlock),
}

/// The blocks to write so that `seqs` (ascending, all above every seq already in the list)
/// follow the list of `mac` whose newest block is `last`: that block filled up first, then new
/// blocks. Each is `(first seq, sealed bytes)`.
pub fn plan(
    log: &Log,
    mac: &[u8],
    last: Option<(u64, Vec<u8>)>,
    seqs: &[u64],
) -> Result<Vec<(u64, Vec<u8>)>, AppendPostingsError> {
    let mut out = Vec::new();
    let mut rest = seqs;
    if let Some((first, sealed)) = last {
        let mut block = decode(first, &log.open_view(&aad(mac, first), &sealed)?)?;
        let room = BLOCK_LEN.saturating_sub(block.len());
        if room > 0 && !rest.is_empty() {
            let take = room.min(rest.len());
            let newest = block.last().copied().unwrap_or(first);
            block.extend(rest[..take].iter().copied().filter(|s| *s > newest));
            rest = &rest[take..];
            out.push((first, log.seal_view(&aad(mac, first), &encode(&block))?));
        }
    }
    for chunk in rest.chunks(BLOCK_LEN) {
        let first = chunk[0];
        out.push((first, log.seal_view(&aad(mac, first), &encode(chunk))?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_with_small_deltas() {
        let seqs = [5u64, 6, 9, 300, 70_000, 70_001];
        let plain = encode(&seqs);
        assert_eq!(plain.len(), 1 + 1 + 1 + 2 + 3 + 1);
        assert_eq!(decode(5, &plain).unwrap(), seqs);
        assert!(decode(5, &[2]).is_err());
        assert!(decode(5, &[1, 0x80]).is_err());
    }
}
