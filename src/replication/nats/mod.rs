//! HQ's forwarding to NATS JetStream: every entry of every site's replica, in seq order, under
//! `plantwire.<site>.<class>` with `Nats-Msg-Id = <site>:<seq>`. A site's cursor advances only
//! past PubAcks and never skips a seq; while NATS is down it stays put and the lag grows.

pub mod auth;
pub mod cursor;
pub mod message;

use std::collections::{BTreeSet, VecDeque};
use std::future::IntoFuture;
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use async_nats::jetstream::context::{
    CreateStreamError, GetStreamError, PublishAckFuture, PublishError,
};
use async_nats::jetstream::{self, stream};
use tokio_util::sync::CancellationToken;

use super::ReplicationError;
use super::hq::Replicas;
use crate::config::NatsConfig;
use crate::log::Log;
use crate::metrics::Metrics;
use crate::store::{ReadTx, StoreError};
use auth::NatsAuth;
use cursor::CursorError;
use message::MessageError;

/// At most this many entries of one site per turn, so one busy site does not hold up the others.
const TURN: u64 = 4096;
/// The longest wait between two attempts while NATS fails.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The server refused this HQ's credentials. Names the way, never the secret.
    #[error(
        "NATS refused the credentials (way: {way}): check replication.nats user/password, token, credentials_file or nkey_seed_file against the server's authorization: {source}"
    )]
    Auth {
        way: &'static str,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("cannot use the NATS credentials: {0}")]
    Credentials(#[source] std::io::Error),
    #[error("cannot connect to NATS: {0}")]
    Connect(#[source] async_nats::ConnectError),
    #[error("cannot create the JetStream stream: {0}")]
    CreateStream(#[source] CreateStreamError),
    #[error("the JetStream stream is not there: {0}")]
    GetStream(#[source] GetStreamError),
    #[error("publish to JetStream failed: {0}")]
    Publish(#[source] PublishError),
    #[error(transparent)]
    Replica(#[from] Box<ReplicationError>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error(transparent)]
    Cursor(#[from] CursorError),
    #[error("stopped")]
    Stopped,
}

impl ForwardError {
    /// Whether NATS itself failed (the pass stops; every site waits for the next attempt).
    fn is_nats(&self) -> bool {
        matches!(
            self,
            Self::Auth { .. }
                | Self::Credentials(_)
                | Self::Connect(_)
                | Self::CreateStream(_)
                | Self::GetStream(_)
                | Self::Publish(_)
        )
    }

    /// The `reason` label of `plantwire_nats_forward_failures_total`.
    fn reason(&self) -> &'static str {
        match self {
            Self::Auth { .. } | Self::Credentials(_) => "auth",
            Self::Connect(_) => "connect",
            Self::CreateStream(_) | Self::GetStream(_) => "stream",
            Self::Publish(_) => "publish",
            Self::Stopped => "stopped",
            Self::Replica(_) | Self::Store(_) | Self::Message(_) | Self::Cursor(_) => "site",
        }
    }
}

/// The forwarding task's parts.
pub struct Forwarder {
    cfg: NatsConfig,
    auth: NatsAuth,
    replicas: Arc<Replicas>,
    metrics: Arc<Metrics>,
}

impl Forwarder {
    /// A forwarder without credentials; see [`Forwarder::with_auth`].
    pub fn new(cfg: NatsConfig, replicas: Arc<Replicas>, metrics: Arc<Metrics>) -> Self {
        Self {
            cfg,
            auth: NatsAuth::None,
            replicas,
            metrics,
        }
    }

    /// The credentials to connect with (read at start by [`NatsAuth::load`]).
    pub fn with_auth(mut self, auth: NatsAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Forwards until `stop`: connect and make sure of the stream, then forward the sites that
    /// have something new (told by [`Replicas::changed`]), every site at start and every
    /// `sweep_secs`; back off (200 ms doubling to 30 s) while NATS fails.
    pub async fn run(self, stop: CancellationToken) {
        let sweep = Duration::from_secs(self.cfg.sweep_secs);
        let mut js: Option<jetstream::Context> = None;
        let mut backoff = FIRST_BACKOFF;
        let mut pending = BTreeSet::new();
        let mut next_sweep = Instant::now();
        loop {
            pending.extend(self.replicas.take_changed());
            if Instant::now() >= next_sweep {
                match self.replicas.sites() {
                    Ok(all) => pending.extend(all),
                    Err(e) => tracing::warn!(error = %e, "NATS forwarding: cannot list the sites"),
                }
                next_sweep = Instant::now() + sweep;
            }
            let attempt = async {
                let ctx = match js.take() {
                    Some(ctx) => ctx,
                    None => self.connect().await?,
                };
                js = Some(ctx.clone());
                self.pass(&ctx, &mut pending, &stop).await
            };
            let failed = match attempt.await {
                Ok(()) => {
                    backoff = FIRST_BACKOFF;
                    false
                }
                Err(ForwardError::Stopped) => return,
                Err(e) => {
                    self.metrics.nats_forward_failed(e.reason());
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis(), "NATS forwarding");
                    // The next attempt connects afresh and finds (or creates) the stream again,
                    // so a stream deleted under a running forwarder comes back.
                    js = None;
                    true
                }
            };
            if failed {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            } else if pending.is_empty() {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = self.replicas.changed() => {}
                    () = tokio::time::sleep_until(next_sweep) => {}
                }
            }
        }
    }

    /// Connects and finds (or creates) the stream. The client reconnects by itself afterwards.
    /// Refused credentials are [`ForwardError::Auth`].
    pub async fn connect(&self) -> Result<jetstream::Context, ForwardError> {
        let url = self.cfg.url.as_deref().unwrap_or_default();
        let mut opts = async_nats::ConnectOptions::new()
            .name("plantwire-hq")
            .connection_timeout(Duration::from_secs(self.cfg.ack_timeout_secs))
            .request_timeout(Some(Duration::from_secs(self.cfg.ack_timeout_secs)));
        if let Some(ca) = &self.cfg.ca_file {
            opts = opts.add_root_certificates(ca.clone()).require_tls(true);
        }
        let opts = self.auth.apply(opts).map_err(ForwardError::Credentials)?;
        let client = opts.connect(url).await.map_err(|e| {
            if e.kind() == async_nats::ConnectErrorKind::AuthorizationViolation {
                ForwardError::Auth {
                    way: self.auth.way(),
                    source: e,
                }
            } else {
                ForwardError::Connect(e)
            }
        })?;
        let js = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(self.cfg.ack_timeout_secs))
            .max_ack_inflight(self.cfg.max_in_flight)
            .backpressure_on_inflight(true)
            .build(client);
        if self.cfg.create_stream {
            js.get_or_create_stream(stream::Config {
                name: self.cfg.stream.clone(),
                subjects: vec!["plantwire.>".into()],
                storage: stream::StorageType::File,
                duplicate_window: Duration::from_secs(self.cfg.duplicate_window_secs),
                ..Default::default()
            })
            .await
            .map_err(ForwardError::CreateStream)?;
        } else {
            js.get_stream(&self.cfg.stream)
                .await
                .map_err(ForwardError::GetStream)?;
        }
        tracing::info!(url, stream = %self.cfg.stream, auth = self.auth.way(), "forwarding to NATS JetStream");
        Ok(js)
    }

    /// One turn over the `pending` sites; a site leaves the set once it is caught up. A NATS
    /// failure ends the turn (the sites stay pending); a site that fails on its own (its replica,
    /// its cursor) is left to the next sweep and does not hold up the others.
    async fn pass(
        &self,
        js: &jetstream::Context,
        pending: &mut BTreeSet<String>,
        stop: &CancellationToken,
    ) -> Result<(), ForwardError> {
        for site in pending.clone() {
            match self.site(js, &site, stop).await {
                Ok(true) => {
                    pending.remove(&site);
                }
                Ok(false) => {}
                Err(e) if e.is_nats() || matches!(e, ForwardError::Stopped) => return Err(e),
                Err(e) => {
                    tracing::warn!(site = %site, error = %e, "NATS forwarding of a site; retried at the next sweep");
                    pending.remove(&site);
                }
            }
        }
        Ok(())
    }

    /// Forwards up to `TURN` entries of `site` past its cursor; whether it is caught up. The
    /// cursor is rewritten every `persist_every` acks and at the end, also when a publish failed.
    async fn site(
        &self,
        js: &jetstream::Context,
        site: &str,
        stop: &CancellationToken,
    ) -> Result<bool, ForwardError> {
        // A site enrolled but not shipped yet has no replica file.
        if !self.replicas.has_replica(site) {
            return Ok(true);
        }
        let dir = self.replicas.site_dir(site);
        let replica = self.replicas.replica(site).await.map_err(Box::new)?;
        let start = cursor::load(&dir, &self.cfg.stream)?;
        let rtx = replica.read()?;
        let head = replica.head(&rtx)?;
        if head <= start {
            self.metrics.set_nats_forward_lag(site, 0);
            return Ok(true);
        }
        let mut run = Run {
            dir: &dir,
            stream: &self.cfg.stream,
            every: self.cfg.persist_every,
            acked: start,
            persisted: start,
        };
        let end = head.min(start.saturating_add(TURN));
        let sent = self
            .publish(js, &replica, &rtx, start + 1..=end, &mut run, stop)
            .await;
        let persisted = run.persist().await;
        self.metrics
            .set_nats_forward_lag(site, head.saturating_sub(run.acked));
        sent?;
        persisted?;
        Ok(run.acked >= head)
    }

    /// Publishes `seqs` with at most `max_in_flight` PubAcks outstanding, awaiting them in seq
    /// order so `run.acked` is always a seq with every lower one acknowledged.
    async fn publish(
        &self,
        js: &jetstream::Context,
        replica: &Log,
        rtx: &ReadTx,
        seqs: RangeInclusive<u64>,
        run: &mut Run<'_>,
        stop: &CancellationToken,
    ) -> Result<(), ForwardError> {
        let mut in_flight: VecDeque<(u64, PublishAckFuture)> = VecDeque::new();
        for seq in seqs {
            if stop.is_cancelled() {
                break;
            }
            if in_flight.len() >= self.cfg.max_in_flight {
                if let Some((s, ack)) = in_flight.pop_front() {
                    acked(s, ack, stop).await?;
                    run.ack(s).await?;
                }
            }
            let m = message::build(replica, rtx, seq)?;
            let ack = js
                .publish_with_headers(m.subject, m.headers, m.payload)
                .await
                .map_err(ForwardError::Publish)?;
            in_flight.push_back((seq, ack));
        }
        while let Some((s, ack)) = in_flight.pop_front() {
            acked(s, ack, stop).await?;
            run.ack(s).await?;
        }
        Ok(())
    }
}

/// Waits for one PubAck; a duplicate (the stream already had this `Nats-Msg-Id`) is success.
async fn acked(
    seq: u64,
    ack: PublishAckFuture,
    stop: &CancellationToken,
) -> Result<(), ForwardError> {
    let ack = tokio::select! {
        () = stop.cancelled() => return Err(ForwardError::Stopped),
        a = ack.into_future() => a.map_err(ForwardError::Publish)?,
    };
    if ack.duplicate {
        tracing::debug!(seq, stream = %ack.stream, "JetStream had this entry already");
    }
    Ok(())
}

/// The cursor of one site during a turn.
struct Run<'a> {
    dir: &'a Path,
    stream: &'a str,
    every: u64,
    acked: u64,
    persisted: u64,
}

impl Run<'_> {
    async fn ack(&mut self, seq: u64) -> Result<(), CursorError> {
        self.acked = seq;
        if self.acked - self.persisted >= self.every {
            self.persist().await?;
        }
        Ok(())
    }

    async fn persist(&mut self) -> Result<(), CursorError> {
        if self.acked > self.persisted {
            cursor::store(self.dir, self.stream, self.acked).await?;
            self.persisted = self.acked;
        }
        Ok(())
    }
}
