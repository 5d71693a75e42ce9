//! Who sees which entry on a live socket: each domain registers its own audience rule for its
//! entry kinds (chat: members; events: everyone signed in at the site; admin streams: admins). The
//! socket asks the registry and never matches kind strings itself.

use crate::log::Entry;
use crate::store::{ReadTx, Role, StoreError};

/// Most entries one replay sends; a client further behind is told to reload from history.
pub const MAX_REPLAY: usize = 50_000;

/// The person a socket belongs to.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// Lower-cased username.
    pub user: String,
    pub role: Role,
}

/// One domain's rule for one socket. `admit` sees the domain's live entries in seq order and may
/// keep state (membership changes apply at their seq); `replay` names every seq in
/// `(since, head]` the viewer may see, reading only indexes, never the whole log.
pub trait Audience: Send {
    fn admit(&mut self, e: &Entry) -> bool;

    /// Sees every live entry of the socket before it is dispatched, whichever domain claims
    /// it, so a rule can follow what changes it (a grant); it must stay cheap (no store read).
    fn observe(&mut self, _e: &Entry) {}

    /// `Ok(None)` when there are more than `room` seqs: too far behind to replay.
    fn replay(
        &self,
        rtx: &ReadTx,
        since: u64,
        head: u64,
        room: usize,
    ) -> Result<Option<Vec<u64>>, StoreError>;
}

/// A domain every signed-in user at the site sees whole (events, alarms): everything live is
/// admitted, and replay reads the domain's own seq index, `index(rtx, lo, hi, limit)` giving the
/// seqs in `lo..=hi`, oldest first, at most `limit`.
pub struct SiteWide(pub SeqIndex);

/// A domain's seq index: the seqs in `lo..=hi`, oldest first, at most `limit`.
pub type SeqIndex = fn(&ReadTx, u64, u64, usize) -> Result<Vec<u64>, StoreError>;

impl Audience for SiteWide {
    fn admit(&mut self, _e: &Entry) -> bool {
        true
    }

    fn replay(
        &self,
        rtx: &ReadTx,
        since: u64,
        head: u64,
        room: usize,
    ) -> Result<Option<Vec<u64>>, StoreError> {
        let seqs = (self.0)(rtx, since.saturating_add(1), head, room.saturating_add(1))?;
        Ok((seqs.len() <= room).then_some(seqs))
    }
}

/// Makes a domain's audience for one viewer, from a read snapshot.
pub type Factory = fn(&ReadTx, &Viewer) -> Result<Box<dyn Audience>, StoreError>;

/// The registry, built once in the composition root. A socket follows the domains it names in
/// its `subscribe` frame ([`DEFAULT_DOMAINS`] when it names none).
#[derive(Default)]
pub struct Audiences {
    domains: Vec<Domain>,
}

struct Domain {
    name: &'static str,
    kinds: &'static [&'static str],
    make: Factory,
}

/// What a socket follows when its `subscribe` names no domains: conversations and contacts.
pub const DEFAULT_DOMAINS: &[&str] = &["chat"];

/// A `subscribe` named a domain nobody registered.
#[derive(Debug, thiserror::Error)]
#[error("unknown domain {0:?}")]
pub struct UnknownDomain(pub String);

impl std::fmt::Debug for Audiences {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.domains.iter().map(|d| d.name).collect();
        f.debug_struct("Audiences")
            .field("domains", &names)
            .finish()
    }
}

impl Audiences {
    /// Registers domain `name`, whose entries have a kind starting with one of `kind_prefixes`.
    pub fn register(
        &mut self,
        name: &'static str,
        kind_prefixes: &'static [&'static str],
        factory: Factory,
    ) {
        self.domains.push(Domain {
            name,
            kinds: kind_prefixes,
            make: factory,
        });
    }

    /// Checks the names a client asked for (all must be registered).
    pub fn check(&self, names: &[String]) -> Result<(), UnknownDomain> {
        match names
            .iter()
            .find(|n| !self.domains.iter().any(|d| d.name == n.as_str()))
        {
            Some(n) => Err(UnknownDomain(n.clone())),
            None => Ok(()),
        }
    }

    /// The audiences of the domains named in `names` (or [`DEFAULT_DOMAINS`]) for `viewer`, as
    /// of `rtx`. Unknown names are skipped: [`Audiences::check`] refuses them first.
    pub fn for_viewer(
        &self,
        rtx: &ReadTx,
        viewer: &Viewer,
        names: &[String],
    ) -> Result<ViewerFilter, StoreError> {
        let wanted = |name: &str| {
            if names.is_empty() {
                DEFAULT_DOMAINS.contains(&name)
            } else {
                names.iter().any(|n| n == name)
            }
        };
        let mut domains = Vec::with_capacity(self.domains.len());
        for d in self.domains.iter().filter(|d| wanted(d.name)) {
            domains.push((d.kinds, (d.make)(rtx, viewer)?));
        }
        Ok(ViewerFilter { domains })
    }
}

/// What a resuming socket gets.
#[derive(Debug)]
pub enum Plan {
    /// These seqs, in order.
    Seqs(Vec<u64>),
    /// More than [`MAX_REPLAY`]: reload from history, then stream live.
    TooFar,
}

/// One socket's audiences, one per domain.
pub struct ViewerFilter {
    domains: Vec<(&'static [&'static str], Box<dyn Audience>)>,
}

impl std::fmt::Debug for ViewerFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewerFilter")
            .field("domains", &self.domains.len())
            .finish()
    }
}

impl ViewerFilter {
    /// Whether the viewer sees `e`; an entry no domain claims is seen by nobody.
    pub fn admit(&mut self, e: &Entry) -> bool {
        for (_, a) in &mut self.domains {
            a.observe(e);
        }
        self.domains
            .iter_mut()
            .find(|(kinds, _)| kinds.iter().any(|k| e.kind.starts_with(k)))
            .is_some_and(|(_, a)| a.admit(e))
    }

    /// Every seq in `(since, head]` the viewer may see, from all domains, in order.
    pub fn plan(&self, rtx: &ReadTx, since: u64, head: u64) -> Result<Plan, StoreError> {
        let mut seqs = Vec::new();
        for (_, a) in &self.domains {
            let room = MAX_REPLAY - seqs.len().min(MAX_REPLAY);
            match a.replay(rtx, since, head, room)? {
                Some(s) => seqs.extend(s),
                None => return Ok(Plan::TooFar),
            }
            if seqs.len() > MAX_REPLAY {
                return Ok(Plan::TooFar);
            }
        }
        seqs.sort_unstable();
        seqs.dedup();
        Ok(Plan::Seqs(seqs))
    }
}

/// An audience of everyone at or above a role, over fixed streams (admin streams: admins).
#[derive(Debug)]
pub struct ByRole {
    allowed: bool,
    streams: &'static [&'static str],
}

impl ByRole {
    pub fn new(viewer: &Viewer, min: Role, streams: &'static [&'static str]) -> Self {
        Self {
            allowed: viewer.role >= min,
            streams,
        }
    }
}

impl Audience for ByRole {
    fn admit(&mut self, _e: &Entry) -> bool {
        self.allowed
    }

    fn replay(
        &self,
        rtx: &ReadTx,
        since: u64,
        head: u64,
        room: usize,
    ) -> Result<Option<Vec<u64>>, StoreError> {
        let mut out = Vec::new();
        if !self.allowed {
            return Ok(Some(out));
        }
        for stream in self.streams {
            let left = room + 1 - out.len().min(room + 1);
            out.extend(rtx.stream_seqs(stream, since.saturating_add(1), head, left)?);
            if out.len() > room {
                return Ok(None);
            }
        }
        Ok(Some(out))
    }
}
