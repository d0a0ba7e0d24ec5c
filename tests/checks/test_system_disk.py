"""disk check against the OS: filesystem sizes equal statvfs, a 64 MiB fsync'd write shows as device write bytes,
default excludes (tmpfs & co.) and include/exclude globs on a tmpfs mounted in a private mount namespace, counter resets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from checks import build_check
from checks.model import Sample
from checks.system.disk import DEFAULT_EXCLUDE_FSTYPES, DiskCheck, parse_mounts

ROOT = Path(__file__).resolve().parents[2]
MiB = 2**20


def mountpoint_of(path: Path) -> str:
    """The mount point whose filesystem holds `path` (the longest matching visible mount)."""
    p = os.path.realpath(path)
    best = "/"
    for m in parse_mounts(Path("/proc/self/mounts").read_bytes()):
        mp = m.mountpoint
        if (p == mp or p.startswith(mp.rstrip("/") + "/")) and len(mp) > len(best):
            best = mp
    return best


def block_device_of(path: Path) -> str | None:
    """Kernel name (as in /proc/diskstats) of the block device holding `path`, or None (overlay, tmpfs, btrfs subvolume...)."""
    dev = os.stat(path).st_dev
    link = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    if not link.exists():
        return None
    return link.resolve().name


def sectors_written(name: str) -> int:
    for line in Path("/proc/diskstats").read_text().splitlines():
        f = line.split()
        if f[2] == name:
            return int(f[9])
    raise AssertionError(f"{name} not in /proc/diskstats")


async def test_filesystem_sizes_equal_statvfs(tmp_path: Path) -> None:
    check = build_check({"type": "disk", "io": False})
    out = await check.run()
    fs = [r for r in out if isinstance(r, Sample)]
    assert fs, "no filesystem reported"
    totals = {r.tags["mountpoint"]: r for r in fs if r.name == "system.filesystem.total_bytes"}
    for mp, s in totals.items():
        st = os.statvfs(mp)
        assert s.value == st.f_blocks * st.f_frsize, mp
        assert set(s.tags) == {"mountpoint", "device", "fstype"}
        assert s.tags["fstype"] not in DEFAULT_EXCLUDE_FSTYPES
        assert not mp.startswith(("/proc", "/sys", "/dev/"))
    mine = mountpoint_of(tmp_path)
    fstype = next(m.fstype for m in parse_mounts(Path("/proc/self/mounts").read_bytes()) if m.mountpoint == mine)
    if fstype in DEFAULT_EXCLUDE_FSTYPES:
        pytest.skip(f"the temp dir is on {fstype} ({mine}), excluded by default")
    st = os.statvfs(tmp_path)
    assert totals[mine].value == st.f_blocks * st.f_frsize
    v = {r.name: r.value for r in fs if r.tags["mountpoint"] == mine}
    # used and free move with other tests' files: check the relations, and free against statvfs loosely
    assert v["system.filesystem.used_bytes"] + v["system.filesystem.free_bytes"] <= v["system.filesystem.total_bytes"]
    assert abs(v["system.filesystem.free_bytes"] - st.f_bavail * st.f_frsize) < 512 * MiB
    used, free = v["system.filesystem.used_bytes"], v["system.filesystem.free_bytes"]
    assert v["system.filesystem.used_percent"] == pytest.approx(used * 100 / (used + free))
    if st.f_files:
        assert 0 < v["system.filesystem.inodes_used_percent"] < 100
    await check.close()


async def test_writing_64_mib_with_fsync_raises_device_write_bytes(tmp_path: Path) -> None:
    name = block_device_of(tmp_path)
    if name is None:
        pytest.skip(f"the temp dir {tmp_path} is on a filesystem without a block device (overlay, tmpfs, ...): no device counters to compare")
    check = build_check({"type": "disk", "filesystems": False, "partitions": True, "include_devices": [name], "exclude_devices": []})
    assert await check.run() == []  # first run: baseline only
    s0 = sectors_written(name)
    t0 = time.monotonic()
    await check.run()  # a second baseline, so the measured interval starts right here
    t1 = time.monotonic()
    block = os.urandom(MiB)
    fd = os.open(tmp_path / "blob", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(64):
            os.write(fd, block)
        os.fsync(fd)
    finally:
        os.close(fd)
    t2 = time.monotonic()
    out = await check.run()
    t3 = time.monotonic()
    s1 = sectors_written(name)
    v = {r.name: r.value for r in out if isinstance(r, Sample) and r.tags == {"device": name}}
    assert set(v) == {
        "system.disk.read_bytes_per_second", "system.disk.write_bytes_per_second", "system.disk.read_ops_per_second",
        "system.disk.write_ops_per_second", "system.disk.average_wait_ms", "system.disk.utilization_percent",
    }  # fmt: skip
    rate = v["system.disk.write_bytes_per_second"]
    # the check's interval lies between [t0, t1] and [t2, t3]: bracket the bytes it saw
    assert rate * (t3 - t0) >= 64 * MiB, (rate, t3 - t0)
    assert rate * (t2 - t1) <= (s1 - s0) * 512
    assert v["system.disk.write_ops_per_second"] > 0
    assert 0 <= v["system.disk.utilization_percent"] <= 100 and v["system.disk.average_wait_ms"] >= 0
    await check.close()


NS_SCRIPT = r"""
import asyncio, json, os, subprocess, sys
base = sys.argv[1]
mp = os.path.join(base, "t mp")  # a space: /proc/self/mounts escapes it as \040
os.makedirs(mp)
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "iwtest", mp], check=True)
from checks import build_check
async def main():
    res = {}
    configs = {
        "default": {"type": "disk", "io": False},
        "tmpfs": {"type": "disk", "io": False, "include_fstypes": ["tmpfs"], "exclude_fstypes": []},
        "tmpfs_but_excluded_mp": {"type": "disk", "io": False, "include_fstypes": ["tmpfs"], "exclude_fstypes": [],
                                  "exclude_mountpoints": [base + "/*"]},
        "only_mine": {"type": "disk", "io": False, "include_mountpoints": [base + "/*"], "exclude_fstypes": []},
    }
    for k, cfg in configs.items():
        c = build_check(cfg)
        res[k] = [[r.name, r.value, r.tags] for r in await c.run()]
        await c.close()
    st = os.statvfs(mp)
    res["statvfs_total"] = st.f_blocks * st.f_frsize
    print(json.dumps(res))
asyncio.run(main())
"""


def test_default_excludes_and_globs_on_a_private_tmpfs(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("this test mounts a tmpfs in a private mount namespace: it needs root and unshare (util-linux)")
    p = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", NS_SCRIPT, str(tmp_path)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    mp = str(tmp_path / "t mp")

    def mounts(key: str) -> set[str]:
        return {tags["mountpoint"] for name, _, tags in res[key]}

    assert mp not in mounts("default")  # tmpfs is excluded by default
    assert mounts("tmpfs") >= {mp} and all(tags["fstype"] == "tmpfs" for _, _, tags in res["tmpfs"])
    total = next(v for name, v, tags in res["tmpfs"] if name == "system.filesystem.total_bytes" and tags["mountpoint"] == mp)
    assert total == res["statvfs_total"] == 16 * MiB
    tags = next(t for _, _, t in res["tmpfs"] if t["mountpoint"] == mp)
    assert tags == {"mountpoint": mp, "device": "iwtest", "fstype": "tmpfs"}
    assert mp not in mounts("tmpfs_but_excluded_mp")
    assert mounts("only_mine") == {mp}


def diskstats_line(name: str, reads: int, rsect: int, rms: int, writes: int, wsect: int, wms: int, ioms: int) -> str:
    return f"   8       0 {name} {reads} 0 {rsect} {rms} {writes} 0 {wsect} {wms} 0 {ioms} {rms + wms} 0 0 0 0 0 0"


def test_device_rates_from_counters_and_resets() -> None:
    """Synthetic /proc/diskstats text (the parser seam): exact iostat arithmetic; a reset gives no rate."""
    c = DiskCheck(DiskCheck.Config(type="disk", include_devices=("fakedisk*",), exclude_devices=()))
    out: list = []
    c.devices(10.0, 1.7e9, diskstats_line("fakedisk0", 100, 1000, 50, 200, 4000, 300, 400).encode(), out)
    assert out == []
    c.devices(12.0, 1.7e9, diskstats_line("fakedisk0", 110, 3000, 70, 230, 8000, 400, 1400).encode(), out)
    v = {r.name: r.value for r in out}
    assert v["system.disk.read_bytes_per_second"] == 2000 * 512 / 2
    assert v["system.disk.write_bytes_per_second"] == 4000 * 512 / 2
    assert v["system.disk.read_ops_per_second"] == 5.0 and v["system.disk.write_ops_per_second"] == 15.0
    assert v["system.disk.average_wait_ms"] == pytest.approx(120 / 40)
    assert v["system.disk.utilization_percent"] == pytest.approx(50.0)
    out.clear()
    # the device was re-created (counters back to small values): nothing for this interval
    c.devices(14.0, 1.7e9, diskstats_line("fakedisk0", 1, 8, 1, 1, 8, 1, 2).encode(), out)
    assert out == []
    c.devices(16.0, 1.7e9, diskstats_line("fakedisk0", 1, 8, 1, 1, 8, 1, 2).encode(), out)
    v = {r.name: r.value for r in out}
    assert v["system.disk.write_bytes_per_second"] == 0.0 and v["system.disk.average_wait_ms"] == 0.0


def test_config_errors_name_the_option() -> None:
    from checks.config import ConfigError

    with pytest.raises(ConfigError, match=r"checks\[0\]\.include_mountpoints\[1\]: empty glob"):
        build_check({"type": "disk", "include_mountpoints": ["/", ""]}, "checks[0]")
    with pytest.raises(ConfigError, match=r"checks\[0\]\.partitions: expected true or false"):
        build_check({"type": "disk", "partitions": "yes"}, "checks[0]")


def test_mount_table_unescapes_and_last_mount_wins() -> None:
    text = b"/dev/sda1 / ext4 rw 0 0\nserver:/x /mnt/a\\040b nfs4 rw 0 0\ntmpfs /mnt/a\\040b tmpfs rw 0 0\n"
    ms = parse_mounts(text)
    assert [(m.mountpoint, m.fstype) for m in ms] == [("/", "ext4"), ("/mnt/a b", "tmpfs")]

