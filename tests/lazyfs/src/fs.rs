//! The FUSE side: a passthrough of a backing directory in which file data stays in memory until
//! fsync. Metadata (create, mkdir, rename, unlink, chmod) goes straight to the backing directory.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::overlay::Overlay;

const TTL: Duration = Duration::from_secs(1);
/// Linux's `O_EXCL` (the same on x86_64, aarch64 and arm).
const O_EXCL: i32 = 0o200;
const S_IFMT: u32 = 0o170000;
const S_IFSOCK: u32 = 0o140000;
const S_IFREG: u32 = 0o100000;

struct Node {
    /// Relative to the backing root; `None` once unlinked or replaced by a rename.
    path: Option<PathBuf>,
    /// The backing file, opened read-write on first use and kept while the node lives.
    file: Option<File>,
    opens: u32,
    /// Unsynced changes; `None` when the backing file is the whole truth.
    overlay: Option<Overlay>,
}

/// Everything the file system and its control socket share.
pub struct State {
    root: PathBuf,
    nodes: HashMap<u64, Node>,
    by_path: HashMap<PathBuf, u64>,
    next: u64,
    /// Writes, creates and syncs fail with ENOSPC.
    pub full: bool,
    /// After a cut: every operation fails with EIO, as on a machine without power.
    pub dead: bool,
    /// How long an fsync takes before it starts writing, like a slow disk: a cut in that window
    /// finds the data still pending.
    pub sync_delay: Duration,
}

pub type Shared = Arc<Mutex<State>>;

pub fn lock(state: &Shared) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl State {
    pub fn new(root: PathBuf) -> Self {
        let mut s = Self {
            root,
            nodes: HashMap::new(),
            by_path: HashMap::new(),
            next: INodeNo::ROOT.0,
            full: false,
            dead: false,
            sync_delay: Duration::ZERO,
        };
        s.ino_for(PathBuf::new());
        s
    }

    fn ino_for(&mut self, path: PathBuf) -> u64 {
        if let Some(&ino) = self.by_path.get(&path) {
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        self.by_path.insert(path.clone(), ino);
        let node = Node {
            path: Some(path),
            file: None,
            opens: 0,
            overlay: None,
        };
        self.nodes.insert(ino, node);
        ino
    }

    fn node(&mut self, ino: INodeNo) -> Result<&mut Node, Errno> {
        self.nodes.get_mut(&ino.0).ok_or(Errno::ENOENT)
    }

    fn rel(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        let node = self.nodes.get(&ino.0).ok_or(Errno::ENOENT)?;
        node.path.clone().ok_or(Errno::ENOENT)
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        Ok(self.rel(parent)?.join(name))
    }

    /// The backing file of `ino`, opened on first use.
    fn file(&mut self, ino: INodeNo) -> Result<&File, Errno> {
        let root = self.root.clone();
        let node = self.node(ino)?;
        if node.file.is_none() {
            let path = node.path.as_ref().ok_or(Errno::ENOENT)?;
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(root.join(path))?;
            node.file = Some(f);
        }
        node.file.as_ref().ok_or(Errno::EIO)
    }

    fn meta(&self, ino: INodeNo) -> Result<Metadata, Errno> {
        let node = self.nodes.get(&ino.0).ok_or(Errno::ENOENT)?;
        Ok(match (&node.path, &node.file) {
            (Some(p), _) => std::fs::symlink_metadata(self.root.join(p))?,
            (None, Some(f)) => f.metadata()?,
            (None, None) => return Err(Errno::ENOENT),
        })
    }

    fn attr(&self, ino: INodeNo) -> Result<FileAttr, Errno> {
        let meta = self.meta(ino)?;
        let pending = self.nodes.get(&ino.0).and_then(|n| n.overlay.as_ref());
        let size = pending.map_or(meta.len(), Overlay::size);
        let time = |secs: i64, nanos: i64| {
            UNIX_EPOCH + Duration::new(secs.max(0) as u64, nanos.clamp(0, 999_999_999) as u32)
        };
        Ok(FileAttr {
            ino,
            size,
            blocks: pending.map_or(meta.blocks(), |_| size.div_ceil(512)),
            atime: time(meta.atime(), meta.atime_nsec()),
            mtime: time(meta.mtime(), meta.mtime_nsec()),
            ctime: time(meta.ctime(), meta.ctime_nsec()),
            crtime: SystemTime::UNIX_EPOCH,
            kind: FileType::from_std(meta.file_type()).ok_or(Errno::EIO)?,
            perm: (meta.mode() & 0o7777) as u16,
            nlink: meta.nlink() as u32,
            uid: meta.uid(),
            gid: meta.gid(),
            rdev: meta.rdev() as u32,
            blksize: 4096,
            flags: 0,
        })
    }

    /// The name `rel` is gone from the backing directory: its node keeps only open handles.
    fn forget_path(&mut self, rel: &Path) {
        if let Some(ino) = self.by_path.remove(rel) {
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.path = None;
                if node.opens == 0 {
                    self.nodes.remove(&ino);
                }
            }
        }
    }

    fn renamed(&mut self, from: &Path, to: &Path) {
        self.forget_path(to);
        let moved: Vec<PathBuf> = self
            .by_path
            .keys()
            .filter(|p| p.starts_with(from))
            .cloned()
            .collect();
        for old in moved {
            let Some(ino) = self.by_path.remove(&old) else {
                continue;
            };
            let new = match old.strip_prefix(from) {
                Ok(rest) if rest.as_os_str().is_empty() => to.to_path_buf(),
                Ok(rest) => to.join(rest),
                Err(_) => continue,
            };
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.path = Some(new.clone());
            }
            self.by_path.insert(new, ino);
        }
    }

    /// Files with unsynced data and the bytes a power cut would lose now.
    pub fn pending(&self) -> (usize, u64) {
        let overlays = self.nodes.values().filter_map(|n| n.overlay.as_ref());
        overlays.fold((0, 0), |(f, b), o| (f + 1, b + o.pending_bytes()))
    }

    /// The files with unsynced data, by path (`?` once unlinked).
    pub fn pending_paths(&self) -> Vec<String> {
        let pending = self.nodes.values().filter(|n| n.overlay.is_some());
        let name = |n: &Node| {
            n.path
                .as_ref()
                .map_or("?".into(), |p| p.display().to_string())
        };
        pending.map(name).collect()
    }

    /// The power cut: drops every unsynced change and stops serving. With `keep`, a torn cut,
    /// the pages it picks reach the backing file first (unsynced writes a disk may have kept).
    pub fn cut(&mut self, mut keep: Option<&mut dyn FnMut(u64) -> bool>) -> io::Result<()> {
        self.dead = true;
        for node in self.nodes.values_mut() {
            if let (Some(overlay), Some(file), Some(keep)) =
                (node.overlay.take(), node.file.as_ref(), keep.as_mut())
            {
                overlay.write_some(file, &mut **keep)?;
            }
            node.overlay = None;
        }
        Ok(())
    }
}

pub struct LazyFs {
    pub state: Shared,
}

impl LazyFs {
    /// The state for a request: refused once the power is cut.
    fn live(&self) -> Result<MutexGuard<'_, State>, Errno> {
        let st = lock(&self.state);
        if st.dead {
            return Err(Errno::EIO);
        }
        Ok(st)
    }

    fn writable(&self) -> Result<MutexGuard<'_, State>, Errno> {
        let st = self.live()?;
        if st.full {
            return Err(Errno::ENOSPC);
        }
        Ok(st)
    }

    fn entry(&self, parent: INodeNo, name: &OsStr) -> Result<FileAttr, Errno> {
        let mut st = self.live()?;
        let rel = st.child(parent, name)?;
        std::fs::symlink_metadata(st.root.join(&rel))?;
        let ino = st.ino_for(rel);
        st.attr(INodeNo(ino))
    }

    fn set_size(&self, ino: INodeNo, size: u64) -> Result<(), Errno> {
        let mut st = self.live()?;
        let full = st.full;
        let len = st.file(ino)?.metadata()?.len();
        let overlay = st
            .node(ino)?
            .overlay
            .get_or_insert_with(|| Overlay::new(len));
        if full && size > overlay.size() {
            return Err(Errno::ENOSPC);
        }
        overlay.truncate(size);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn set_attr(
        &self,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
    ) -> Result<FileAttr, Errno> {
        {
            let st = self.live()?;
            let path = st.root.join(st.rel(ino)?);
            if let Some(mode) = mode {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))?;
            }
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::chown(&path, uid, gid)?;
            }
        }
        if let Some(size) = size {
            self.set_size(ino, size)?;
        }
        self.live()?.attr(ino)
    }

    fn create_file(
        &self,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<FileAttr, Errno> {
        let mut st = self.writable()?;
        let rel = st.child(parent, name)?;
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).mode(mode & 0o7777);
        if flags & O_EXCL != 0 {
            opts.create_new(true);
        } else {
            opts.create(true);
        }
        let file = opts.open(st.root.join(&rel))?;
        let ino = st.ino_for(rel);
        let node = st.node(INodeNo(ino))?;
        node.file.get_or_insert(file);
        node.opens += 1;
        st.attr(INodeNo(ino))
    }

    fn read_at(&self, ino: INodeNo, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let mut st = self.live()?;
        st.file(ino)?;
        let node = st.node(ino)?;
        let file = node.file.as_ref().ok_or(Errno::EIO)?;
        let snapshot = Overlay::new(file.metadata()?.len());
        let view = node.overlay.as_ref().unwrap_or(&snapshot);
        Ok(view.read(file, offset, u64::from(size))?)
    }

    fn write_at(&self, ino: INodeNo, offset: u64, data: &[u8]) -> Result<(), Errno> {
        let mut st = self.writable()?;
        let len = st.file(ino)?.metadata()?.len();
        let node = st.node(ino)?;
        let file = node.file.as_ref().ok_or(Errno::EIO)?;
        let overlay = node.overlay.get_or_insert_with(|| Overlay::new(len));
        Ok(overlay.write(file, offset, data)?)
    }

    fn sync(&self, ino: INodeNo) -> Result<(), Errno> {
        let delay = self.live()?.sync_delay;
        std::thread::sleep(delay);
        let mut st = self.live()?;
        let full = st.full;
        st.file(ino)?;
        let node = st.node(ino)?;
        let file = node.file.as_ref().ok_or(Errno::EIO)?;
        if let Some(overlay) = &node.overlay {
            if full {
                // The changes stay pending: a later fsync, once there is space, can still succeed.
                return Err(Errno::ENOSPC);
            }
            overlay.sync(file)?;
            node.overlay = None;
        }
        Ok(())
    }

    fn list(&self, ino: INodeNo) -> Result<Vec<(u64, FileType, std::ffi::OsString)>, Errno> {
        let mut st = self.live()?;
        let rel = st.rel(ino)?;
        let mut out = vec![
            (ino.0, FileType::Directory, ".".into()),
            (ino.0, FileType::Directory, "..".into()),
        ];
        let mut entries: Vec<_> = std::fs::read_dir(st.root.join(&rel))?
            .collect::<io::Result<_>>()
            .map_err(Errno::from)?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let kind = FileType::from_std(e.file_type()?).unwrap_or(FileType::RegularFile);
            let child = st.ino_for(rel.join(e.file_name()));
            out.push((child, kind, e.file_name()));
        }
        Ok(out)
    }
}

fn reply_entry(reply: ReplyEntry, attr: Result<FileAttr, Errno>) {
    match attr {
        Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn reply_empty(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for LazyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply_entry(reply, self.entry(parent, name));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.live().and_then(|st| st.attr(ino)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self.set_attr(ino, mode, uid, gid, size) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let made = self.writable().and_then(|st| {
            let path = st.root.join(st.child(parent, name)?);
            let mut b = std::fs::DirBuilder::new();
            Ok(b.mode(mode & !umask & 0o7777).create(path)?)
        });
        reply_entry(reply, made.and_then(|()| self.entry(parent, name)));
    }

    /// Regular files and Unix sockets (the server's `control.sock`); nothing else.
    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let made = self.writable().and_then(|st| {
            let path = st.root.join(st.child(parent, name)?);
            match mode & S_IFMT {
                S_IFSOCK => drop(std::os::unix::net::UnixListener::bind(&path)?),
                S_IFREG => drop(
                    OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&path)?,
                ),
                _ => return Err(Errno::EPERM),
            }
            let perm = std::fs::Permissions::from_mode(mode & !umask & 0o7777);
            Ok(std::fs::set_permissions(&path, perm)?)
        });
        reply_entry(reply, made.and_then(|()| self.entry(parent, name)));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let removed = self.live().and_then(|mut st| {
            let rel = st.child(parent, name)?;
            std::fs::remove_file(st.root.join(&rel))?;
            st.forget_path(&rel);
            Ok(())
        });
        reply_empty(reply, removed);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let removed = self.live().and_then(|mut st| {
            let rel = st.child(parent, name)?;
            std::fs::remove_dir(st.root.join(&rel))?;
            st.forget_path(&rel);
            Ok(())
        });
        reply_empty(reply, removed);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let renamed = self.live().and_then(|mut st| {
            if !flags.is_empty() {
                return Err(Errno::EINVAL);
            }
            let (from, to) = (st.child(parent, name)?, st.child(newparent, newname)?);
            std::fs::rename(st.root.join(&from), st.root.join(&to))?;
            st.renamed(&from, &to);
            Ok(())
        });
        reply_empty(reply, renamed);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let opened = self.live().and_then(|mut st| {
            st.file(ino)?;
            st.node(ino)?.opens += 1;
            Ok(())
        });
        match opened {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.read_at(ino, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.write_at(ino, offset, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    /// `close` makes nothing durable: only fsync does.
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.live().map(drop));
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut st = lock(&self.state);
        if let Some(node) = st.nodes.get_mut(&ino.0) {
            node.opens = node.opens.saturating_sub(1);
            if node.opens == 0 && node.path.is_none() {
                st.nodes.remove(&ino.0);
            }
        }
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _data: bool, reply: ReplyEmpty) {
        reply_empty(reply, self.sync(ino));
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.live() {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.list(ino) {
            Ok(entries) => {
                for (i, (child, kind, name)) in
                    entries.into_iter().enumerate().skip(offset as usize)
                {
                    if reply.add(INodeNo(child), i as u64 + 1, kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    /// Directory entries are already on the backing disk (see the module header).
    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _d: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.live().map(drop));
    }

    /// Fixed figures, not the backing disk's: 4 GiB, half free, or none while full.
    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let free = if lock(&self.state).full { 0 } else { 1 << 19 };
        reply.statfs(1 << 20, free, free, 1 << 20, 1 << 19, 4096, 255, 4096);
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self.create_file(parent, name, mode & !umask, flags) {
            Ok(attr) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }
}
