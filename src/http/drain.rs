//! Early answers to requests whose body is still arriving: what is left of a small body is read
//! and thrown away before the answer goes out, so a client still sending (curl over HTTP/2) reads
//! the answer instead of a stream reset. Larger or slower bodies are still cut off.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};

/// What is read of an unread body by default: at most this much more,
pub const DRAIN_BYTES: usize = 64 << 10;
/// within this long in all,
pub const DRAIN_TIME: Duration = Duration::from_secs(1);
/// stopping early when the client pauses this long (it is waiting for us, not sending).
const DRAIN_PAUSE: Duration = Duration::from_millis(250);

/// Put on a response by a handler that refuses a body and wants more of it read than the
/// default before answering (a refused upload). It applies whatever length was declared.
#[derive(Debug, Clone, Copy)]
pub struct Linger {
    pub bytes: usize,
    pub time: Duration,
}

type Leftover = Arc<Mutex<Option<Body>>>;

/// What the edge layer keeps of a request with a body, to drain what the handler left unread.
pub struct Unread {
    declared: Option<u64>,
    /// A client waiting for `100 Continue` has sent nothing yet; reading would only invite it.
    waits: bool,
    leftover: Leftover,
}

impl Unread {
    /// Hands the request a body that, when dropped unfinished, comes back here. A request without
    /// a body needs nothing (`None`).
    pub fn wrap(req: Request) -> (Request, Option<Self>) {
        if hyper::body::Body::is_end_stream(req.body()) {
            return (req, None);
        }
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let waits = req.headers().contains_key(header::EXPECT);
        let leftover: Leftover = Arc::new(Mutex::new(None));
        let (parts, body) = req.into_parts();
        let body = Body::new(Returning {
            inner: Some(body),
            finished: false,
            leftover: leftover.clone(),
        });
        let unread = Self {
            declared,
            waits,
            leftover,
        };
        (Request::from_parts(parts, body), Some(unread))
    }

    /// Once the answer is ready, drains what is left of the body within the bounds (the
    /// handler's [`Linger`], else the defaults) before the answer goes out.
    pub async fn drain(self, res: &mut Response) {
        let linger = res.extensions_mut().remove::<Linger>();
        if self.waits || res.status() == StatusCode::SWITCHING_PROTOCOLS {
            return;
        }
        let (bytes, time) = match linger {
            Some(l) => (l.bytes, l.time),
            None if self.declared.is_some_and(|n| n > DRAIN_BYTES as u64) => return,
            None => (DRAIN_BYTES, DRAIN_TIME),
        };
        let rest = self.leftover.lock().ok().and_then(|mut slot| slot.take());
        if let Some(rest) = rest {
            discard(rest, bytes, time).await;
        }
    }
}

/// Reads and drops up to `bytes` of `body` within `time`, stopping at a pause.
async fn discard(mut body: Body, bytes: usize, time: Duration) {
    let drain = async {
        let mut seen = 0usize;
        while let Ok(Some(Ok(frame))) = tokio::time::timeout(DRAIN_PAUSE, body.frame()).await {
            seen += frame.data_ref().map_or(0, Bytes::len);
            if seen > bytes {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(time, drain).await;
}

/// A request body that gives itself back to its [`Unread`] when dropped before its end.
struct Returning {
    inner: Option<Body>,
    finished: bool,
    leftover: Leftover,
}

impl hyper::body::Body for Returning {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = std::pin::Pin::new(inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.finished = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(hyper::body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), hyper::body::Body::size_hint)
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Some(inner) = self.inner.take() {
            if !hyper::body::Body::is_end_stream(&inner) {
                if let Ok(mut slot) = self.leftover.lock() {
                    *slot = Some(inner);
                }
            }
        }
    }
}
