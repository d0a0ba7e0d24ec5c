"""Disk check: per-filesystem space and inodes (statvfs) and per-block-device I/O rates (/proc/diskstats)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import select
import time
from dataclasses import dataclass
from typing import NamedTuple

from checks.base import Check, CheckConfig
from checks.catalogue import MetricSpec
from checks.config import Duration
from checks.model import MAX_TAG_VALUE_LEN, Reading, Sample
from checks.system import GlobFilter, ProcFile, Rates, validate_globs

log = logging.getLogger("infrawatch.checks.disk")

#: pseudo, in-memory, container-layer and read-only image filesystems (node_exporter's list plus tmpfs & co.)
DEFAULT_EXCLUDE_FSTYPES: tuple[str, ...] = (
    "tmpfs", "devtmpfs", "ramfs", "overlay", "aufs", "squashfs", "iso9660", "proc", "sysfs",
    "cgroup", "cgroup2", "devpts", "mqueue", "debugfs", "tracefs", "securityfs", "pstore", "bpf",
    "configfs", "fusectl", "hugetlbfs", "autofs", "binfmt_misc", "rpc_pipefs", "nsfs", "efivarfs",
    "selinuxfs", "rootfs", "fuse.lxcfs", "fuse.gvfsd-fuse", "fuse.portal", "nfsd",
)  # fmt: skip
#: kernel interfaces and container runtimes' private mounts
DEFAULT_EXCLUDE_MOUNTPOINTS: tuple[str, ...] = (
    "/dev", "/dev/*", "/proc", "/proc/*", "/sys", "/sys/*", "/run/credentials/*", "/run/user/*/doc",
    "/var/lib/docker/*", "/var/lib/containers/storage/*", "/var/lib/kubelet/pods/*", "/snap/*",
)  # fmt: skip
#: loop devices (snaps, images), RAM disks, compressed RAM swap, floppies, optical drives
DEFAULT_EXCLUDE_DEVICES: tuple[str, ...] = ("loop*", "ram*", "zram*", "fd*", "sr*")

# statvfs on these can hang for as long as a server or a FUSE daemon does not answer: off the loop
_REMOTE_FSTYPES = frozenset(
    ("nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "9p", "afs", "lustre", "gpfs", "davfs", "ncpfs", "beegfs")
)
_SECTOR = 512  # /proc/diskstats counts 512-byte sectors whatever the device's block size
_ESCAPE_RE = re.compile(rb"\\([0-7]{3})")
# partition names when /sys is not available: sda1, vdb2, xvda1, hdc3, nvme0n1p2, mmcblk0p1
_PARTITION_RE = re.compile(r"^(?:(?:[shv]|xv)d[a-z]+\d+|.*\dp\d+)$")

_FS = ("mountpoint", "device", "fstype")
_DEV = ("device",)


@dataclass(frozen=True, kw_only=True)
class DiskConfig(CheckConfig):
    #: report filesystem space and inodes
    filesystems: bool = True
    #: report block device I/O
    io: bool = True
    #: filesystem type globs to report; empty = every type not excluded
    include_fstypes: tuple[str, ...] = ()
    #: filesystem type globs never reported (replaces the default list when set)
    exclude_fstypes: tuple[str, ...] = DEFAULT_EXCLUDE_FSTYPES
    #: mount point globs to report; empty = every mount point not excluded
    include_mountpoints: tuple[str, ...] = ()
    #: mount point globs never reported (replaces the default list when set)
    exclude_mountpoints: tuple[str, ...] = DEFAULT_EXCLUDE_MOUNTPOINTS
    #: block device name globs (as in /proc/diskstats: sda, nvme0n1, dm-0) to report; empty = all
    include_devices: tuple[str, ...] = ()
    #: block device name globs never reported (replaces the default list when set)
    exclude_devices: tuple[str, ...] = DEFAULT_EXCLUDE_DEVICES
    #: also report partitions (sda1, nvme0n1p2); by default only whole devices are reported
    partitions: bool = False
    #: how long to wait for statvfs on a network or FUSE filesystem before skipping it for this run
    remote_timeout: Duration = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for f in ("include_fstypes", "exclude_fstypes", "include_mountpoints", "exclude_mountpoints", "include_devices", "exclude_devices"):
            validate_globs(f, getattr(self, f))
        if self.remote_timeout <= 0:
            raise ValueError("remote_timeout must be greater than 0")


class Mount(NamedTuple):
    device: str
    mountpoint: str
    fstype: str


def _unescape(b: bytes) -> str:
    if b"\\" in b:
        b = _ESCAPE_RE.sub(lambda m: bytes((int(m.group(1), 8),)), b)
    return os.fsdecode(b)


def parse_mounts(data: bytes) -> list[Mount]:
    """Entries of /proc/self/mounts; for a mount point listed twice the last (visible) mount wins."""
    by_mp: dict[str, Mount] = {}
    for line in data.split(b"\n"):
        f = line.split(b" ", 3)
        if len(f) < 3:
            continue
        mp = _unescape(f[1])
        by_mp.pop(mp, None)
        by_mp[mp] = Mount(_unescape(f[0]), mp, _unescape(f[2]))
    return list(by_mp.values())


class MountTable:
    """/proc/self/mounts, re-read only when the kernel says it changed (poll() reports POLLPRI on change)."""

    def __init__(self, path: str = "/proc/self/mounts") -> None:
        self.path = path
        self._fd: int | None = None
        self._poll: select.poll | None = None
        self._mounts: list[Mount] | None = None

    def get(self) -> tuple[list[Mount], bool]:
        """(mounts, changed since the previous call)."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            self._poll = select.poll()
            self._poll.register(self._fd, select.POLLPRI | select.POLLERR)
        elif self._mounts is not None and not self._poll.poll(0):  # type: ignore[union-attr]
            return self._mounts, False
        os.lseek(self._fd, 0, os.SEEK_SET)
        chunks = []
        while b := os.read(self._fd, 65536):
            chunks.append(b)
        self._mounts = parse_mounts(b"".join(chunks))
        return self._mounts, True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._poll = None
            self._mounts = None


def is_partition(name: str) -> bool:
    """Whether a /proc/diskstats name is a partition (sysfs says so; a name pattern when /sys is absent)."""
    try:
        return os.path.exists(f"/sys/class/block/{name.replace('/', '!')}/partition") or (
            not os.path.isdir("/sys/class/block") and _PARTITION_RE.match(name) is not None
        )
    except ValueError:
        return False


class DiskCheck(Check[DiskConfig]):
    """Filesystems: one statvfs per mount that passes the fstype and mount point filters; the mount
    table is re-parsed only when it changes. Local filesystems are read inline (microseconds each);
    network and FUSE filesystems, whose statvfs can hang, go through a thread with `remote_timeout`,
    and a mount whose previous statvfs is still stuck is skipped rather than queued again.
    free_bytes is the space available to unprivileged users and used_percent = used / (used + free),
    as `df` shows them.

    Block devices: whole devices only by default (a disk's counters already include its partitions',
    and utilisation and wait are properties of the device's queue); `partitions: true` adds them.
    Device-mapper and md devices are whole devices. Rates come from counter deltas between runs: the
    first run has none, and a device whose counters went backwards is skipped for that interval.
    """

    Config = DiskConfig
    METRICS = (
        MetricSpec("system.filesystem.total_bytes", "bytes", "gauge", "size of the filesystem", _FS),
        MetricSpec("system.filesystem.used_bytes", "bytes", "gauge", "space in use (including the root reserve)", _FS),
        MetricSpec("system.filesystem.free_bytes", "bytes", "gauge", "space available to unprivileged users", _FS),
        MetricSpec("system.filesystem.used_percent", "percent", "gauge", "used / (used + free), as df shows", _FS),
        MetricSpec("system.filesystem.inodes_used_percent", "percent", "gauge", "inodes in use (filesystems with a fixed inode table only)", _FS),
        MetricSpec("system.disk.read_bytes_per_second", "bytes_per_second", "rate", "bytes read from the device per second", _DEV),
        MetricSpec("system.disk.write_bytes_per_second", "bytes_per_second", "rate", "bytes written to the device per second", _DEV),
        MetricSpec("system.disk.read_ops_per_second", "per_second", "rate", "read requests completed per second", _DEV),
        MetricSpec("system.disk.write_ops_per_second", "per_second", "rate", "write requests completed per second", _DEV),
        MetricSpec("system.disk.average_wait_ms", "milliseconds", "gauge", "average time a request completed in the interval spent queued and serviced (iostat await); 0 without requests", _DEV),
        MetricSpec("system.disk.utilization_percent", "percent", "gauge", "share of the interval the device had requests in flight (iostat %util)", _DEV),
    )

    def __init__(self, config: DiskConfig, *, state_dir: str | None = None) -> None:
        super().__init__(config, state_dir=state_dir)
        c = config
        self._fstype_ok = GlobFilter(c.include_fstypes, c.exclude_fstypes)
        self._mp_ok = GlobFilter(c.include_mountpoints, c.exclude_mountpoints)
        self._dev_ok = GlobFilter(c.include_devices, c.exclude_devices)
        self._mounts = MountTable()
        self._selected: list[tuple[Mount, bool]] = []  # (mount, remote)
        self._stuck: set[str] = set()  # mount points whose statvfs is still running in a thread
        self._partition: dict[str, bool] = {}
        self._rates = Rates()
        self._diskstats = ProcFile("/proc/diskstats")

    async def close(self) -> None:
        self._mounts.close()
        self._diskstats.close()

    async def run(self) -> list[Reading]:
        ts = time.time()
        out: list[Reading] = []
        if self.config.filesystems:
            await self.filesystems(ts, out)
        if self.config.io:
            self.devices(time.monotonic(), ts, self._diskstats.read(), out)
        return out

    # ------------------------------------------------------------------ filesystems

    def _select(self, mounts: list[Mount]) -> list[tuple[Mount, bool]]:
        sel = []
        for m in mounts:
            if not (self._fstype_ok(m.fstype) and self._mp_ok(m.mountpoint)):
                continue
            if len(m.mountpoint) > MAX_TAG_VALUE_LEN or len(m.fstype) > MAX_TAG_VALUE_LEN:
                log.debug("mount point name too long for a tag, skipped", extra={"mountpoint": m.mountpoint[:80]})
                continue
            if len(m.device) > MAX_TAG_VALUE_LEN:
                m = m._replace(device=m.device[:MAX_TAG_VALUE_LEN])
            sel.append((m, m.fstype in _REMOTE_FSTYPES or m.fstype.startswith("fuse")))
        return sel

    async def filesystems(self, ts: float, out: list[Reading]) -> None:
        mounts, changed = self._mounts.get()
        if changed:
            self._selected = self._select(mounts)
        remote: list[Mount] = []
        for m, is_remote in self._selected:
            if is_remote:
                remote.append(m)
                continue
            try:
                st = os.statvfs(m.mountpoint)
            except OSError as e:  # unmounted meanwhile, permission denied, I/O error
                log.debug("statvfs failed", extra={"mountpoint": m.mountpoint, "error": str(e)})
                continue
            _fs_samples(out, ts, m, st)
        if remote:
            await self._remote(ts, remote, out)

    async def _remote(self, ts: float, mounts: list[Mount], out: list[Reading]) -> None:
        tasks: dict[asyncio.Future[os.statvfs_result], Mount] = {}
        for m in mounts:
            if m.mountpoint in self._stuck:
                continue
            fut = asyncio.ensure_future(asyncio.to_thread(os.statvfs, m.mountpoint))
            self._stuck.add(m.mountpoint)
            fut.add_done_callback(self._unstuck(m.mountpoint))
            tasks[fut] = m
        if not tasks:
            return
        done, pending = await asyncio.wait(tasks, timeout=self.config.remote_timeout)
        for fut in pending:
            log.warning("statvfs did not answer in time, filesystem skipped", extra={"mountpoint": tasks[fut].mountpoint})
        for fut in done:
            if fut.cancelled() or fut.exception() is not None:
                continue
            _fs_samples(out, ts, tasks[fut], fut.result())

    def _unstuck(self, mountpoint: str):  # type: ignore[no-untyped-def]
        def done(f: asyncio.Future[os.statvfs_result]) -> None:
            self._stuck.discard(mountpoint)
            if not f.cancelled() and f.exception() is not None:
                log.debug("statvfs failed", extra={"mountpoint": mountpoint, "error": str(f.exception())})

        return done

    # ------------------------------------------------------------------ block devices

    def _is_partition(self, name: str) -> bool:
        p = self._partition.get(name)
        if p is None:
            if len(self._partition) > 4096:
                self._partition.clear()
            p = self._partition[name] = is_partition(name)
        return p

    def devices(self, now: float, ts: float, data: bytes, out: list[Reading]) -> None:
        rates = self._rates
        partitions = self.config.partitions
        for line in data.split(b"\n"):
            f = line.split()
            if len(f) < 14:
                continue
            name = f[2].decode()
            if not self._dev_ok(name) or (not partitions and self._is_partition(name)):
                continue
            # reads, sectors read, ms reading, writes, sectors written, ms writing, ms doing I/O
            d = rates.deltas(name, now, (int(f[3]), int(f[5]), int(f[6]), int(f[7]), int(f[9]), int(f[10]), int(f[12])))
            if d is None:
                continue
            dt, (reads, rsect, rms, writes, wsect, wms, ioms) = d
            ops = reads + writes
            out.append(Sample("system.disk.read_bytes_per_second", rsect * _SECTOR / dt, ts, {"device": name}))
            out.append(Sample("system.disk.write_bytes_per_second", wsect * _SECTOR / dt, ts, {"device": name}))
            out.append(Sample("system.disk.read_ops_per_second", reads / dt, ts, {"device": name}))
            out.append(Sample("system.disk.write_ops_per_second", writes / dt, ts, {"device": name}))
            out.append(Sample("system.disk.average_wait_ms", (rms + wms) / ops if ops else 0.0, ts, {"device": name}))
            out.append(Sample("system.disk.utilization_percent", min(100.0, ioms / (dt * 10.0)), ts, {"device": name}))
        rates.prune()


def _fs_samples(out: list[Reading], ts: float, m: Mount, st: os.statvfs_result) -> None:
    if st.f_blocks == 0:  # pseudo filesystem that slipped through the filters
        return
    bs = st.f_frsize or st.f_bsize
    total = st.f_blocks * bs
    free = st.f_bavail * bs
    used = (st.f_blocks - st.f_bfree) * bs
    mp, dev, fst = m.mountpoint, m.device, m.fstype
    out.append(Sample("system.filesystem.total_bytes", float(total), ts, {"mountpoint": mp, "device": dev, "fstype": fst}))
    out.append(Sample("system.filesystem.used_bytes", float(used), ts, {"mountpoint": mp, "device": dev, "fstype": fst}))
    out.append(Sample("system.filesystem.free_bytes", float(free), ts, {"mountpoint": mp, "device": dev, "fstype": fst}))
    if used + free > 0:
        out.append(Sample("system.filesystem.used_percent", used * 100.0 / (used + free), ts, {"mountpoint": mp, "device": dev, "fstype": fst}))
    if st.f_files > 0:
        out.append(
            Sample("system.filesystem.inodes_used_percent", (st.f_files - st.f_ffree) * 100.0 / st.f_files, ts, {"mountpoint": mp, "device": dev, "fstype": fst})
        )
