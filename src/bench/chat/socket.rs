//! One bench client socket: reading a server frame for the few fields the bench needs,
//! closed-loop sends matched to their acks, and the paced phase's tally shared by every receiver.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

use super::{Ws, random_token};

/// How long a reader waits for its next frame before it gives up on the phase.
const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a sender waits for the ack of one message.
pub(super) const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// What a receiver saw: (message number, latency µs) for every message entry.
pub(super) type Seen = Vec<(u64, u64)>;

/// The fields of a server frame the bench reads. Everything else in the frame is skipped by the
/// parser without being built, so a receiver spends little per frame beside the TLS record: the
/// client must cost less than the server for the fan-out figures to be the server's.
///
/// Serde borrows from the frame only for a field of type `Cow<str>` itself (not inside an
/// `Option`), so absent fields default to an empty string instead of `None`.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    #[serde(default, borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    key: Cow<'a, str>,
    #[serde(default, borrow)]
    body: FrameBody<'a>,
}

#[derive(Deserialize, Default)]
struct FrameBody<'a> {
    #[serde(default, borrow)]
    text: Cow<'a, str>,
}

/// What one frame means to the bench.
enum Arrival {
    /// A chat message of the bench: its number and its send time (µs since `start`).
    Message(u64, u64),
    /// The ack of the send with this idempotency key.
    Ack(String),
    /// The server refused something or closed the socket: the phase ends for this socket.
    Error,
    Other,
}

/// Reads the next frame of `ws` and says what it is; `None` when the socket timed out, failed or
/// was closed.
async fn next_frame(ws: &mut Ws) -> Option<Arrival> {
    loop {
        let text = match tokio::time::timeout(READ_TIMEOUT, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) | Err(_) => return None,
            Ok(Some(Ok(_))) => continue,
        };
        return Some(classify(text.as_str()));
    }
}

/// What a text frame means to the bench. A frame it cannot read is not one of its messages; a
/// missing message is counted as lost at the end, so nothing is hidden by skipping it.
fn classify(text: &str) -> Arrival {
    let Ok(f) = serde_json::from_str::<Frame>(text) else {
        return Arrival::Other;
    };
    match (f.ty.as_ref(), f.kind.as_ref()) {
        ("entry", "chat.message") => {
            let mut parts = f.body.text.split(' ');
            let n = parts.next().and_then(|p| p.parse::<u64>().ok());
            let at = parts.next().and_then(|p| p.parse::<u64>().ok());
            match (n, at) {
                (Some(n), Some(at)) => Arrival::Message(n, at),
                _ => Arrival::Other,
            }
        }
        ("ack", _) => Arrival::Ack(f.key.into_owned()),
        ("error", _) => Arrival::Error,
        _ => Arrival::Other,
    }
}

fn since_start(start: Instant) -> u64 {
    start.elapsed().as_micros() as u64
}

/// The paced phase's tally, shared by every receiver: per message, how many sockets have it and
/// the latest arrival. The receiver that completes a message wakes the sender.
pub(super) struct Pace {
    first: u64,
    pub(super) sockets: usize,
    got: Vec<AtomicUsize>,
    last_us: Vec<AtomicU64>,
    done: Notify,
}

impl Pace {
    pub(super) fn new(first: u64, messages: usize, sockets: usize) -> Self {
        Self {
            first,
            sockets,
            got: (0..messages).map(|_| AtomicUsize::new(0)).collect(),
            last_us: (0..messages).map(|_| AtomicU64::new(0)).collect(),
            done: Notify::new(),
        }
    }

    /// Message `n` reached one more socket, `lat` µs after it was sent. Numbers outside the
    /// phase (a late frame of the phase before) are not counted.
    fn arrived(&self, n: u64, lat: u64) {
        let Some(i) = n.checked_sub(self.first).map(|i| i as usize) else {
            return;
        };
        let (Some(got), Some(last)) = (self.got.get(i), self.last_us.get(i)) else {
            return;
        };
        last.fetch_max(lat, Ordering::Relaxed);
        if got.fetch_add(1, Ordering::AcqRel) + 1 == self.sockets {
            self.done.notify_waiters();
        }
    }

    /// Waits until message `i` of the phase has reached every socket and returns its latest
    /// arrival (µs after the send); fails when it has not by `deadline`.
    async fn wait_all(&self, i: usize, deadline: tokio::time::Instant) -> anyhow::Result<u64> {
        let (Some(got), Some(last)) = (self.got.get(i), self.last_us.get(i)) else {
            bail!("paced fan-out: no message {i} in this phase");
        };
        loop {
            // Registered before the count is read, so the last socket's wake-up is not missed.
            let done = self.done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            let now = got.load(Ordering::Acquire);
            if now >= self.sockets {
                return Ok(last.load(Ordering::Relaxed));
            }
            if tokio::time::timeout_at(deadline, done).await.is_err() {
                bail!(
                    "paced fan-out: message {} reached {now} of {} sockets in time",
                    self.first + i as u64,
                    self.sockets
                );
            }
        }
    }
}

/// Reads one connection until it has `want` of the bench's messages: each becomes (number,
/// latency), and is told to `pace` when one is given. Hands the socket back for the next phase.
pub(super) async fn receive(
    mut ws: Ws,
    start: Instant,
    want: usize,
    pace: Option<Arc<Pace>>,
) -> (Seen, Ws) {
    let mut seen = Vec::with_capacity(want);
    while seen.len() < want {
        match next_frame(&mut ws).await {
            Some(Arrival::Message(n, at)) => {
                let lat = since_start(start).saturating_sub(at);
                seen.push((n, lat));
                if let Some(pace) = &pace {
                    pace.arrived(n, lat);
                }
            }
            Some(Arrival::Ack(_) | Arrival::Other) => {}
            Some(Arrival::Error) | None => break,
        }
    }
    (seen, ws)
}

/// How many of the `want` messages a socket was to get are not among those it `seen` (each
/// counted once, however often it arrived).
pub(super) fn missing(seen: &Seen, want: usize) -> usize {
    let got: HashSet<u64> = seen.iter().map(|(n, _)| *n).collect();
    want - got.len().min(want)
}

/// What one closed-loop sender did: its ack latencies, when its last ack came, and what its
/// socket received.
pub(super) struct Sent {
    pub(super) acks: Vec<u64>,
    pub(super) last_ack: Instant,
    pub(super) seen: Seen,
    pub(super) ws: Ws,
}

/// One closed-loop sender on its own socket: send, read until the ack, repeat; then read on
/// until the socket has `want` messages (everyone's, its own included), after the clock of the
/// sends has stopped at the last ack.
pub(super) async fn send_loop(
    mut ws: Ws,
    conv: String,
    numbers: Vec<u64>,
    want: usize,
    start: Instant,
) -> anyhow::Result<Sent> {
    let mut lat = Vec::with_capacity(numbers.len());
    let mut seen = Vec::with_capacity(want);
    for n in numbers {
        lat.push(send_one(&mut ws, &conv, n, start, &mut seen).await?);
    }
    let last_ack = Instant::now();
    while seen.len() < want {
        match next_frame(&mut ws).await {
            Some(Arrival::Message(n, at)) => seen.push((n, since_start(start).saturating_sub(at))),
            Some(Arrival::Ack(_) | Arrival::Other) => {}
            Some(Arrival::Error) | None => break,
        }
    }
    Ok(Sent {
        acks: lat,
        last_ack,
        seen,
        ws,
    })
}

/// Sends message `n` (its text carries the send time) and reads until its ack, keeping the
/// messages that arrive meanwhile in `seen`; returns the ack latency in µs.
async fn send_one(
    ws: &mut Ws,
    conv: &str,
    n: u64,
    start: Instant,
    seen: &mut Seen,
) -> anyhow::Result<u64> {
    let t0 = since_start(start);
    let key = format!("bench-{n}-{}", random_token());
    let frame = json!({"type": "send", "conv": conv, "key": key, "text": format!("{n} {t0} fan-out benchmark message")});
    ws.send(Message::text(frame.to_string())).await?;
    let ack = async {
        loop {
            match next_frame(ws).await {
                Some(Arrival::Ack(k)) if k == key => return Ok(since_start(start) - t0),
                Some(Arrival::Message(m, at)) => {
                    seen.push((m, since_start(start).saturating_sub(at)))
                }
                Some(Arrival::Ack(_) | Arrival::Other) => {}
                Some(Arrival::Error) => bail!("the server refused message {n}"),
                None => bail!("no ack for message {n}: the socket timed out or closed"),
            }
        }
    };
    tokio::time::timeout(ACK_TIMEOUT, ack)
        .await
        .with_context(|| format!("no ack for message {n} in {} s", ACK_TIMEOUT.as_secs()))?
}

/// The paced fan-out: sends `pace`'s messages one at a time over `ws`, each only once every
/// socket of `pace` has the one before. Per message: the latency to the last socket (the
/// largest of the receivers' send-to-arrival latencies) and to the ack.
pub(super) async fn paced(
    ws: &mut Ws,
    pace: &Pace,
    conv: &str,
    start: Instant,
) -> anyhow::Result<(Vec<u64>, Vec<u64>)> {
    let messages = pace.got.len();
    let mut to_last = Vec::with_capacity(messages);
    let mut to_ack = Vec::with_capacity(messages);
    let mut own = Vec::new();
    for i in 0..messages {
        let n = pace.first + i as u64;
        to_ack.push(send_one(ws, conv, n, start, &mut own).await?);
        let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
        to_last.push(pace.wait_all(i, deadline).await?);
        own.clear();
    }
    Ok((to_last, to_ack))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soon() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_millis(20)
    }

    /// The paced tally wakes the sender only once every socket has the message, and gives the
    /// latest arrival; numbers outside the phase are not counted.
    #[tokio::test]
    async fn the_pace_waits_for_every_socket_and_gives_the_latest_arrival() {
        let pace = Arc::new(Pace::new(100, 2, 3));
        pace.arrived(100, 5);
        pace.arrived(100, 9);
        // A late frame of the phase before, and one past the phase: neither counts.
        pace.arrived(99, 50);
        pace.arrived(102, 50);
        assert!(pace.wait_all(0, soon()).await.is_err(), "2 of 3 sockets");
        // The last socket wakes a sender that is already waiting.
        let waiting = {
            let pace = pace.clone();
            tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                pace.wait_all(0, deadline).await
            })
        };
        tokio::task::yield_now().await;
        pace.arrived(100, 7);
        assert_eq!(waiting.await.unwrap().unwrap(), 9);
        // The next message starts from nothing.
        assert!(pace.wait_all(1, soon()).await.is_err());
        for lat in [3, 4, 2] {
            pace.arrived(101, lat);
        }
        assert_eq!(pace.wait_all(1, soon()).await.unwrap(), 4);
        assert!(pace.wait_all(2, soon()).await.is_err(), "no third message");
    }

    /// A frame is read for what the bench needs: the message number and send time from a chat
    /// message entry, the key from an ack; anything else (other kinds, other frames, a text that
    /// is not the bench's, a frame it cannot parse) is not one of its messages.
    #[test]
    fn frames_are_read_for_what_the_bench_needs() {
        let entry = |kind: &str, text: &str| {
            json!({"type": "entry", "seq": 7, "kind": kind, "stream": "conv/g-1", "author": "a",
                "author_kind": "user", "body": {"type": "message", "conv": "g-1", "key": "k",
                "text": text, "mentions": []}})
            .to_string()
        };
        let is_message =
            |a: Arrival, want: (u64, u64)| matches!(a, Arrival::Message(n, at) if (n, at) == want);
        assert!(is_message(
            classify(&entry("chat.message", "12 3456 fan-out benchmark message")),
            (12, 3456)
        ));
        // An escaped text is read whole (owned, not borrowed).
        assert!(is_message(
            classify(&entry("chat.message", "1 2 \"q\"")),
            (1, 2)
        ));
        assert!(matches!(
            classify(&entry("chat.edited", "12 3456 x")),
            Arrival::Other
        ));
        assert!(matches!(
            classify(&entry("chat.message", "hello there")),
            Arrival::Other
        ));
        let ack = json!({"type": "ack", "id": 1, "conv": "g-1", "seq": 8, "key": "bench-12-ab", "duplicate": false});
        assert!(matches!(classify(&ack.to_string()), Arrival::Ack(k) if k == "bench-12-ab"));
        assert!(matches!(
            classify(r#"{"type":"error","code":"not_member"}"#),
            Arrival::Error
        ));
        assert!(matches!(
            classify(r#"{"type":"caught_up","head":9}"#),
            Arrival::Other
        ));
        assert!(matches!(classify("not json"), Arrival::Other));
    }
}
