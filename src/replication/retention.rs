//! Retention at HQ: each site's replica is purged by that site's bounds, set at HQ (the replica's
//! own scope rows over HQ's `[retention]` defaults), and recorded in HQ's own log, never the
//! replica's. A background task runs a pass over every site each `retention.interval_secs`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::hq::Replicas;
use crate::config::Config;
use crate::log::{Author, Log};
use crate::retention::{Floor, Retention};

/// Retention over `site`'s replica, journaled in `hq` (HQ's own log).
pub fn for_site(config: &Config, replica: Log, hq: Log, site: &str) -> Retention {
    // Nothing bounds a purge at HQ: the site's own edge keeps what HQ has not acknowledged.
    let floor: Floor = Arc::new(|| None);
    Retention::for_replica(replica, config.retention.clone(), floor, hq, site)
}

/// A pass over every enrolled site's replica every `retention.interval_secs` until `stop`.
pub async fn run(config: Config, replicas: Arc<Replicas>, hq: Log, stop: CancellationToken) {
    let every = Duration::from_secs(config.retention.interval_secs);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let sites = match replicas.sites() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "HQ retention: cannot list the sites; retried at the next interval");
                continue;
            }
        };
        for site in sites {
            if stop.is_cancelled() {
                return;
            }
            // A site added but not enrolled yet has no replica file: nothing to purge.
            if !replicas.has_replica(&site) {
                continue;
            }
            let replica = match replicas.replica(&site).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(site = %site, error = %e, "HQ retention: cannot open the replica");
                    continue;
                }
            };
            let r = for_site(&config, replica, hq.clone(), &site);
            let pass = tokio::select! {
                () = stop.cancelled() => return,
                p = r.pass(false, &Author::System) => p,
            };
            match pass {
                Ok(p) if !p.purged.is_empty() || p.forgotten > 0 => tracing::info!(
                    site = %site,
                    purged = p.purged.len(),
                    forgotten = p.forgotten,
                    "HQ retention pass"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(site = %site, error = %e, "HQ retention pass failed; retried at the next interval")
                }
            }
        }
    }
}
