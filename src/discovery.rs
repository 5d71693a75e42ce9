//! mDNS (mdns-sd): announce `_plantwire._tcp.local.` with TXT `site`, `version` and `fp` on the
//! LAN, follow address changes, send goodbyes on shutdown; and browse for `plantwire discover`.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
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

/// What the listeners serve, as mDNS should announce it: one port, and per address family
/// either every address (an unspecified listener such as `0.0.0.0` or `[::]`) or the listed ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub port: u16,
    v4_any: bool,
    v6_any: bool,
    specific: Vec<IpAddr>,
}

impl Served {
    /// From the bound listeners: the first one's port, and the addresses listening on it.
    /// Loopback listeners reach no one on the LAN; `None` when nothing else is left.
    pub fn from_bound(bound: &[SocketAddr]) -> Option<Self> {
        let port = bound.first()?.port();
        let mut served = Self {
            port,
            v4_any: false,
            v6_any: false,
            specific: Vec::new(),
        };
        for addr in bound.iter().filter(|a| a.port() == port) {
            match addr.ip() {
                IpAddr::V4(ip) if ip.is_unspecified() => served.v4_any = true,
                IpAddr::V6(ip) if ip.is_unspecified() => served.v6_any = true,
                ip if ip.is_loopback() => {}
                ip => served.specific.push(ip),
            }
        }
        (served.v4_any || served.v6_any || !served.specific.is_empty()).then_some(served)
    }

    /// Narrows the daemon's addresses to the served ones: a family no listener serves is off,
    /// and a listener's own address is on.
    fn select(&self, daemon: &ServiceDaemon) -> Result<(), DiscoveryError> {
        if !self.v4_any {
            daemon.disable_interface(IfKind::IPv4)?;
        }
        if !self.v6_any {
            daemon.disable_interface(IfKind::IPv6)?;
        }
        let own: Vec<IfKind> = self.specific.iter().map(|ip| IfKind::Addr(*ip)).collect();
        if !own.is_empty() {
            daemon.enable_interface(own)?;
        }
        Ok(())
    }
}

/// The fingerprints announced in TXT: `ca` (the site CA's, the one to compare) and `fp` (the
/// certificate served now, which changes at each renewal).
#[derive(Debug, Clone)]
pub struct Fingerprints {
    pub ca: Option<String>,
    pub served: String,
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
    /// Announces `<site> (<host>)._plantwire._tcp.local.` on the served port, with those
    /// addresses of the selected interfaces that a listener serves, kept current as they change.
    pub fn start(
        cfg: &DiscoveryConfig,
        site: &str,
        served: &Served,
        fingerprints: &Fingerprints,
    ) -> Result<Self, DiscoveryError> {
        let port = served.port;
        let daemon = ServiceDaemon::new()?;
        select_interfaces(&daemon, cfg)?;
        served.select(&daemon)?;
        daemon.set_ip_check_interval(ADDRESS_CHECK_SECS)?;
        let host = host_label();
        let instance = format!("{site} ({host})");
        let mut txt = vec![
            ("site", site),
            ("version", env!("CARGO_PKG_VERSION")),
            ("fp", fingerprints.served.as_str()),
        ];
        if let Some(ca) = &fingerprints.ca {
            txt.push(("ca", ca.as_str()));
        }
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
    /// SHA-256 of the site CA the instance announces (TXT `ca`): the fingerprint to compare
    /// before trusting it; it stays the same across certificate renewals.
    pub ca_fingerprint: Option<String>,
    /// SHA-256 of the certificate the instance says it serves now (TXT `fp`).
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
                    ca_fingerprint: prop("ca"),
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

#[cfg(test)]
mod tests {
    use super::Served;

    #[test]
    fn served_follows_the_listeners() {
        let addrs = |list: &[&str]| -> Vec<std::net::SocketAddr> {
            list.iter().map(|a| a.parse().unwrap()).collect()
        };
        let v4 = Served::from_bound(&addrs(&["0.0.0.0:8443"])).unwrap();
        assert!(v4.v4_any && !v4.v6_any && v4.specific.is_empty());
        let both = Served::from_bound(&addrs(&["0.0.0.0:8443", "[::]:8443"])).unwrap();
        assert!(both.v4_any && both.v6_any);
        let other_port = Served::from_bound(&addrs(&["0.0.0.0:8443", "[::]:9000"])).unwrap();
        assert!(
            !other_port.v6_any,
            "a listener on another port is not announced"
        );
        let one = Served::from_bound(&addrs(&["127.0.0.1:8443", "10.0.0.5:8443"])).unwrap();
        assert_eq!(
            one.specific,
            vec!["10.0.0.5".parse::<std::net::IpAddr>().unwrap()]
        );
        assert!(!one.v4_any && !one.v6_any);
        assert_eq!(
            Served::from_bound(&addrs(&["127.0.0.1:8443", "[::1]:8443"])),
            None
        );
    }
}
