//! mDNS (mdns-sd): announce `_plantwire._tcp.local.` with TXT `site`, `version` and `fp` on the
//! LAN, follow address changes, send goodbyes on shutdown; and browse for `plantwire discover`.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use serde::Serialize;

use crate::config::DiscoveryConfig;

/// The DNS-SD service type plantwire announces.
pub const SERVICE_TYPE: &str = "_plantwire._tcp.local.";
/// How often the daemon re-reads the interfaces' addresses (mdns-sd's default is 5 s too).
const ADDRESS_CHECK_SECS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("mDNS: {0}")]
    Mdns(#[from] mdns_sd::Error),
}

/// Which interfaces to use: the allow-list, else every non-loopback one (IPv4 and IPv6).
fn select_interfaces(daemon: &ServiceDaemon, cfg: &DiscoveryConfig) -> Result<(), DiscoveryError> {
    if cfg.interfaces.is_empty() {
        daemon.disable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6])?;
    } else {
        daemon.disable_interface(IfKind::All)?;
        let names: Vec<IfKind> = cfg
            .interfaces
            .iter()
            .map(|n| IfKind::Name(n.clone()))
            .collect();
        daemon.enable_interface(names)?;
    }
    Ok(())
}

/// The host part of our mDNS names: the host name, reduced to a DNS label.
fn host_label() -> String {
    let host = gethostname::gethostname().to_string_lossy().to_lowercase();
    let label: String = host
        .split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    if label.is_empty() {
        "plantwire".into()
    } else {
        label
    }
}

/// This server on the LAN, announced until `goodbye`.
pub struct Announcer {
    daemon: ServiceDaemon,
    fullname: String,
}

impl std::fmt::Debug for Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcer")
            .field("fullname", &self.fullname)
            .finish()
    }
}

impl Announcer {
    /// Announces `<site> (<host>)._plantwire._tcp.local.` on `port`, with the addresses of the
    /// selected interfaces, kept current as they change.
    pub fn start(
        cfg: &DiscoveryConfig,
        site: &str,
        port: u16,
        fingerprint: &str,
    ) -> Result<Self, DiscoveryError> {
        let daemon = ServiceDaemon::new()?;
        select_interfaces(&daemon, cfg)?;
        daemon.set_ip_check_interval(ADDRESS_CHECK_SECS)?;
        let host = host_label();
        let instance = format!("{site} ({host})");
        let txt = [
            ("site", site),
            ("version", env!("CARGO_PKG_VERSION")),
            ("fp", fingerprint),
        ];
        let mut info = ServiceInfo::new(
            SERVICE_TYPE,
            &instance,
            &format!("{host}.local."),
            "",
            port,
            &txt[..],
        )?
        .enable_addr_auto();
        if !cfg.interfaces.is_empty() {
            info.set_interfaces(
                cfg.interfaces
                    .iter()
                    .map(|n| IfKind::Name(n.clone()))
                    .collect(),
            );
        }
        let fullname = info.get_fullname().to_string();
        daemon.register(info)?;
        tracing::info!(name = %fullname, port, "announcing on mDNS");
        Ok(Self { daemon, fullname })
    }

    /// Withdraws the announcement (goodbye packets with TTL 0) and stops the daemon. Waits at
    /// most a second for the goodbyes to go out.
    pub fn goodbye(self) {
        let wait = Duration::from_secs(1);
        match self.daemon.unregister(&self.fullname) {
            Ok(done) => {
                if done.recv_timeout(wait).is_err() {
                    tracing::warn!("mDNS goodbye not confirmed in time");
                }
            }
            Err(e) => tracing::warn!(error = %e, "mDNS goodbye failed"),
        }
        if let Ok(done) = self.daemon.shutdown() {
            let _ = done.recv_timeout(wait);
        }
        tracing::info!(name = %self.fullname, "mDNS announcement withdrawn");
    }
}

/// One instance heard on the LAN.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Instance {
    pub name: String,
    pub host: String,
    pub addresses: Vec<IpAddr>,
    pub port: u16,
    pub site: Option<String>,
    pub version: Option<String>,
    /// SHA-256 of the certificate the instance says it serves; compare before trusting it.
    pub fingerprint: Option<String>,
}

/// Listens for `timeout` and returns every instance resolved, sorted by name. Uses every
/// non-loopback interface unless `cfg.interfaces` restricts them.
pub fn browse(cfg: &DiscoveryConfig, timeout: Duration) -> Result<Vec<Instance>, DiscoveryError> {
    let daemon = ServiceDaemon::new()?;
    select_interfaces(&daemon, cfg)?;
    let events = daemon.browse(SERVICE_TYPE)?;
    let deadline = Instant::now() + timeout;
    let mut found: std::collections::BTreeMap<String, Instance> = Default::default();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match events.recv_timeout(left) {
            Ok(ServiceEvent::ServiceResolved(s)) => {
                let addresses: BTreeSet<IpAddr> =
                    s.addresses.iter().map(|a| a.to_ip_addr()).collect();
                let prop = |k: &str| s.get_property_val_str(k).map(str::to_string);
                let instance = Instance {
                    name: s.fullname.clone(),
                    host: s.host.clone(),
                    addresses: addresses.into_iter().collect(),
                    port: s.port,
                    site: prop("site"),
                    version: prop("version"),
                    fingerprint: prop("fp"),
                };
                found.insert(s.fullname.clone(), instance);
            }
            Ok(ServiceEvent::ServiceRemoved(_, name)) => {
                found.remove(&name);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = daemon.stop_browse(SERVICE_TYPE);
    if let Ok(done) = daemon.shutdown() {
        let _ = done.recv_timeout(Duration::from_secs(1));
    }
    Ok(found.into_values().collect())
}
