//! The bench's link emulator (`bench replication --link 1mbit,100ms`): a userspace TCP relay on
//! loopback that carries each direction through a token bucket, a one-way delay and a bounded
//! buffer, for kernels without `sch_netem`. A bench tool only: the server never uses it.
//!
//! How it differs from netem + tbf: it terminates TCP at both ends, so the endpoints' TCP sees a
//! loopback path (no slow start or congestion window over the delayed path); there is no loss,
//! reordering or jitter model; the delay is applied per chunk read (at most [`CHUNK_CAPPED`]
//! bytes when the rate is capped), and a full buffer stops reading instead of dropping, so the
//! sender is held back by TCP flow control rather than by loss.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Bytes read per chunk when the rate is capped: about one TCP segment, so the delay and the
/// pacing act per segment rather than per large read.
pub const CHUNK_CAPPED: usize = 1448;
/// Bytes read per chunk without a rate cap.
const CHUNK_FREE: usize = 64 << 10;
/// The token bucket's depth: 4,000 bytes, as `tc tbf burst 32kbit` in `benches/replication.sh`.
pub const BURST_BYTES: u64 = 4_000;
/// What the buffer holds beyond the bandwidth-delay product: a queue of 64 KiB (~0.5 s at
/// 1 Mbit/s, near the script's `tbf latency 400ms`).
pub const QUEUE_BYTES: usize = 64 << 10;
/// The buffer without a rate cap (the bandwidth-delay product is unbounded then).
const BUFFER_FREE: usize = 4 << 20;
/// Chunks in flight per direction, whatever their size.
const MAX_CHUNKS: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum LinkSpecError {
    #[error(
        "--link {0:?}: expected RATE,RTT such as 1mbit,100ms (RATE: none or N with bit, kbit, mbit or gbit; RTT: N with ms or s)"
    )]
    Shape(String),
    #[error("--link {0:?}: the rate must be 8 kbit to 100 gbit and the RTT at most 10 s")]
    Bounds(String),
}

/// One emulated path: the same rate and half the RTT in each direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkSpec {
    /// Bytes per second each way; 0 = no cap.
    pub rate_bytes_per_sec: u64,
    /// Round-trip time; each direction delays by half of it.
    pub rtt: Duration,
    /// Bytes a direction holds at most: queued plus on the wire.
    pub buffer_bytes: usize,
}

impl LinkSpec {
    /// `rate_bits` bits per second (0: no cap) and `rtt`, with a buffer of the bandwidth-delay
    /// product plus [`QUEUE_BYTES`].
    pub fn new(rate_bits: u64, rtt: Duration) -> Self {
        let rate_bytes_per_sec = rate_bits / 8;
        let buffer_bytes = if rate_bytes_per_sec == 0 {
            BUFFER_FREE
        } else {
            let bdp = u128::from(rate_bytes_per_sec) * rtt.as_micros() / 1_000_000;
            // Within a semaphore's permits (a 32-bit target has far fewer).
            usize::try_from(bdp)
                .unwrap_or(usize::MAX)
                .min(Semaphore::MAX_PERMITS - QUEUE_BYTES)
                + QUEUE_BYTES
        };
        Self {
            rate_bytes_per_sec,
            rtt,
            buffer_bytes,
        }
    }

    /// Parses `RATE,RTT`: `1mbit,100ms`, `512kbit,0ms`, `none,100ms`.
    pub fn parse(s: &str) -> Result<Self, LinkSpecError> {
        let shape = || LinkSpecError::Shape(s.to_string());
        let (rate, rtt) = s.split_once(',').ok_or_else(shape)?;
        let rate = rate.trim().to_ascii_lowercase();
        let rate_bits = if rate == "none" {
            0
        } else {
            let (digits, unit) = split_unit(&rate);
            let n: u64 = digits.parse().map_err(|_| shape())?;
            let scale = match unit {
                "bit" => 1,
                "kbit" => 1_000,
                "mbit" => 1_000_000,
                "gbit" => 1_000_000_000,
                _ => return Err(shape()),
            };
            n.checked_mul(scale).ok_or_else(shape)?
        };
        let rtt = rtt.trim().to_ascii_lowercase();
        let (digits, unit) = split_unit(&rtt);
        let n: u64 = digits.parse().map_err(|_| shape())?;
        let rtt = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            _ => return Err(shape()),
        };
        if (rate_bits != 0 && !(8_000..=100_000_000_000).contains(&rate_bits))
            || rtt > Duration::from_secs(10)
        {
            return Err(LinkSpecError::Bounds(s.to_string()));
        }
        Ok(Self::new(rate_bits, rtt))
    }

    /// For the report: `1 Mbit/s, 100 ms RTT, buffer 77 KiB each way`.
    pub fn label(&self) -> String {
        let rate = match self.rate_bytes_per_sec * 8 {
            0 => "no rate cap".to_string(),
            b if b % 1_000_000 == 0 => format!("{} Mbit/s", b / 1_000_000),
            b => format!("{} kbit/s", b / 1_000),
        };
        format!(
            "{rate}, {} ms RTT, buffer {} KiB each way",
            self.rtt.as_millis(),
            self.buffer_bytes >> 10
        )
    }

    fn one_way(&self) -> Duration {
        self.rtt / 2
    }

    fn chunk(&self) -> usize {
        if self.rate_bytes_per_sec == 0 {
            CHUNK_FREE
        } else {
            CHUNK_CAPPED
        }
    }

    /// How long `n` bytes take at the rate.
    fn serialise(&self, n: u64) -> Duration {
        if self.rate_bytes_per_sec == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(
            u64::try_from(u128::from(n) * 1_000_000_000 / u128::from(self.rate_bytes_per_sec))
                .unwrap_or(u64::MAX),
        )
    }
}

fn split_unit(s: &str) -> (&str, &str) {
    let at = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(at)
}

/// Bytes carried so far, per direction.
#[derive(Debug, Default)]
pub struct Carried {
    /// From the connecting side (the edge) to the upstream (HQ).
    pub up: AtomicU64,
    /// From the upstream back.
    pub down: AtomicU64,
}

/// A running relay: connections to [`Relay::addr`] are carried to the upstream address.
pub struct Relay {
    addr: SocketAddr,
    carried: Arc<Carried>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Relay {
    /// Listens on `127.0.0.1:0` and relays every connection to `upstream` through `spec`.
    pub async fn start(upstream: SocketAddr, spec: LinkSpec) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let carried = Arc::new(Carried::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(accept(
            listener,
            upstream,
            spec,
            carried.clone(),
            stop.clone(),
        ));
        Ok(Self {
            addr,
            carried,
            stop,
            task,
        })
    }

    /// Where the edge connects.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Bytes carried so far: (up, down).
    pub fn carried(&self) -> (u64, u64) {
        (
            self.carried.up.load(Ordering::Relaxed),
            self.carried.down.load(Ordering::Relaxed),
        )
    }

    /// Stops listening and cuts every relayed connection.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    spec: LinkSpec,
    carried: Arc<Carried>,
    stop: CancellationToken,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (down, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "link relay: accept failed");
                    continue;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            () = stop.cancelled() => break,
        };
        let carried = carried.clone();
        conns.spawn(async move {
            let up = match TcpStream::connect(upstream).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, %upstream, "link relay: upstream unreachable");
                    return;
                }
            };
            let _ = (down.set_nodelay(true), up.set_nodelay(true));
            let (down_r, down_w) = down.into_split();
            let (up_r, up_w) = up.into_split();
            // A direction ends on EOF (passed on as a half-close) or an error; the connection
            // ends when both have.
            let (a, b) = tokio::join!(
                carry(down_r, up_w, spec, &carried.up),
                carry(up_r, down_w, spec, &carried.down),
            );
            if let Err(e) = a.and(b) {
                tracing::debug!(error = %e, "link relay: connection ended");
            }
        });
    }
    // Dropping the set aborts every relayed connection.
    conns.shutdown().await;
}

/// One direction: a reader that admits chunks into the bounded buffer and stamps each with its
/// delivery time (token bucket, then the one-way delay), and a writer that delivers them then.
async fn carry(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    spec: LinkSpec,
    counter: &AtomicU64,
) -> std::io::Result<()> {
    let room = Arc::new(Semaphore::new(spec.buffer_bytes));
    let (tx, mut rx) =
        mpsc::channel::<(Instant, Vec<u8>, tokio::sync::OwnedSemaphorePermit)>(MAX_CHUNKS);
    let reader = async move {
        let mut buf = vec![0u8; spec.chunk()];
        // Token bucket as a theoretical arrival time (GCRA): a chunk may leave once the bucket
        // holds its bytes, i.e. at `tat - burst`; leaving moves `tat` on by its bytes at the rate.
        let burst = spec.serialise(BURST_BYTES);
        let mut tat = Instant::now();
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            // A full buffer stops the reading here, so the sender's TCP window closes.
            let permit = room
                .clone()
                .acquire_many_owned(u32::try_from(n).unwrap_or(u32::MAX))
                .await
                .map_err(|_| std::io::Error::other("link buffer closed"))?;
            let now = Instant::now();
            let leave = now.max(tat.checked_sub(burst).unwrap_or(now));
            tat = tat.max(leave) + spec.serialise(n as u64);
            let at = leave + spec.one_way();
            if tx.send((at, buf[..n].to_vec(), permit)).await.is_err() {
                return Ok(());
            }
        }
    };
    let writer = async move {
        while let Some((at, bytes, permit)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            to.write_all(&bytes).await?;
            counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            drop(permit);
        }
        to.shutdown().await
    };
    let (r, w) = tokio::join!(reader, writer);
    r.and(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_units_and_bounds() {
        let s = LinkSpec::parse("1mbit,100ms").unwrap();
        assert_eq!(s.rate_bytes_per_sec, 125_000);
        assert_eq!(s.rtt, Duration::from_millis(100));
        assert_eq!(s.one_way(), Duration::from_millis(50));
        assert_eq!(s.buffer_bytes, 12_500 + QUEUE_BYTES, "BDP plus the queue");
        assert_eq!(s.label(), "1 Mbit/s, 100 ms RTT, buffer 76 KiB each way");
        let s = LinkSpec::parse("512kbit,0ms").unwrap();
        assert_eq!((s.rate_bytes_per_sec, s.rtt), (64_000, Duration::ZERO));
        let s = LinkSpec::parse("none,1s").unwrap();
        assert_eq!((s.rate_bytes_per_sec, s.buffer_bytes), (0, BUFFER_FREE));
        assert_eq!(s.serialise(1 << 20), Duration::ZERO);
        assert_eq!(
            LinkSpec::parse("1mbit,0ms").unwrap().serialise(125_000),
            Duration::from_secs(1)
        );
        for bad in [
            "1mbit",
            "1mb,100ms",
            "fast,1ms",
            "1mbit,100",
            "1mbit,-1ms",
            "",
        ] {
            assert!(
                matches!(LinkSpec::parse(bad), Err(LinkSpecError::Shape(_))),
                "{bad}"
            );
        }
        for bad in [
            "100bit,1ms",
            "1mbit,11s",
            "101gbit,10ms",
            "2000000000gbit,10s",
        ] {
            assert!(
                matches!(LinkSpec::parse(bad), Err(LinkSpecError::Bounds(_))),
                "{bad}"
            );
        }
    }
}
