"""Find (or build) a kernel header tree BCC can compile against.

Hosts with headers for the running kernel use them untouched. Hosts without
(cloud kernels, CI machines) get the distribution's newest header package
merged into one tree: Debian splits it into `-common` and an arch directory,
and BCC wants a single directory, so we symlink-copy both into a cache dir.
The XDP program uses only stable UAPI headers, so a nearby version works.

Runs standalone (`python3 kheaders.py --build`) from the setup script, before
the venv exists, so it imports nothing from the project.
"""

from __future__ import annotations

import glob
import os
import platform
import shutil
import stat
import subprocess
import sys
import tempfile

CACHE_DIR = "/var/cache/zbanner-xdp"


class HeadersError(RuntimeError):
    pass


class UnsafeCacheError(RuntimeError):
    """A cache path someone else could have written: refused, never loaded (one line)."""


def cache_dirs() -> list[str]:
    """Where compiled artefacts (record formatter, BPF bytecode) are kept, best first.

    ZBANNER_CACHE_DIR replaces them all (tests; a read-only install's own place).
    """
    override = os.environ.get("ZBANNER_CACHE_DIR")
    if override:
        return [override]
    return [CACHE_DIR, os.path.join(tempfile.gettempdir(), f"zbanner-xdp-{os.getuid()}")]


def _unsafe(st: os.stat_result) -> str | None:
    """Why a cache path's owner or mode would let another user change what we load, or None."""
    if st.st_uid not in (0, os.getuid()):
        return f"owned by uid {st.st_uid}, neither root nor us"
    if st.st_mode & 0o022:
        return f"writable by {'others' if st.st_mode & 0o002 else 'its group'} (mode {st.st_mode & 0o7777:o})"
    return None


def private_dir(d: str) -> bool:
    """A cache directory we may load code from, as root: created if missing (only ours); False where it
    cannot be made. One another user could write to is refused: UnsafeCacheError."""
    try:
        os.makedirs(d, mode=0o700, exist_ok=True)
        st = os.stat(d)
    except OSError:
        return False
    why = _unsafe(st)
    if why:
        raise UnsafeCacheError(
            f"refusing the cache directory {d}: {why}; it holds code loaded with privileges "
            f"(fix: chown root {d} && chmod go-w {d}, or remove it)"
        )
    return True


def check_cached_file(path: str) -> None:
    """Before loading a cached artefact (in a private_dir): a regular file, not a symlink, that no other
    user could have written; UnsafeCacheError otherwise."""
    st = os.lstat(path)
    why = "not a regular file" if not stat.S_ISREG(st.st_mode) else _unsafe(st)
    if why:
        raise UnsafeCacheError(
            f"refusing the cached file {path}: {why}; it is code loaded with privileges (fix: remove it)"
        )


def _running_build_dir() -> str | None:
    build = f"/lib/modules/{platform.release()}/build"
    return build if os.path.isdir(os.path.join(build, "include")) else None


def _candidate_dirs() -> list[str]:
    """Arch-specific header dirs in /usr/src, newest first."""
    dirs = [
        d.rstrip("/")
        for d in glob.glob("/usr/src/linux-headers-*/")
        if not d.rstrip("/").endswith("-common") and os.path.isdir(os.path.join(d, "include"))
    ]

    def version_key(path: str) -> list[int]:
        return [int(x) for x in _digits(os.path.basename(path))]

    return sorted(dirs, key=version_key, reverse=True)


def _digits(name: str) -> list[str]:
    out, cur = [], ""
    for ch in name:
        if ch.isdigit():
            cur += ch
        elif cur:
            out.append(cur)
            cur = ""
    if cur:
        out.append(cur)
    return out


def _common_dir(arch_dir: str) -> str | None:
    # linux-headers-6.1.0-42-amd64 -> linux-headers-6.1.0-42-common
    base = arch_dir.rsplit("-", 1)[0]
    common = base + "-common"
    return common if os.path.isdir(common) else None


def merged_tree_path(arch_dir: str) -> str:
    return os.path.join(CACHE_DIR, "kernel-" + os.path.basename(arch_dir))


def build_merged_tree() -> str:
    """Create the merged tree from installed distribution headers; idempotent."""
    cands = _candidate_dirs()
    if not cands:
        raise HeadersError("no kernel headers installed under /usr/src (run: sudo make setup)")
    arch_dir = cands[0]
    common = _common_dir(arch_dir)
    if common is None:
        # Ubuntu's -generic package is already complete.
        return arch_dir
    target = merged_tree_path(arch_dir)
    if os.path.isfile(os.path.join(target, ".complete")):
        return target
    shutil.rmtree(target, ignore_errors=True)
    os.makedirs(CACHE_DIR, exist_ok=True)
    subprocess.run(["cp", "-as", common, target], check=True)
    subprocess.run(["cp", "-asf", arch_dir + "/.", target + "/"], check=True)
    with open(os.path.join(target, ".complete"), "w") as fh:
        fh.write(arch_dir + "\n")
    return target


def kernel_source() -> str | None:
    """The directory for BCC_KERNEL_SOURCE, or None when the host's own headers apply."""
    env = os.environ.get("BCC_KERNEL_SOURCE")
    if env and os.path.isdir(env):
        return env
    if _running_build_dir():
        return None
    for arch_dir in _candidate_dirs():
        common = _common_dir(arch_dir)
        if common is None:
            return arch_dir
        target = merged_tree_path(arch_dir)
        if os.path.isfile(os.path.join(target, ".complete")):
            return target
    raise HeadersError(
        f"no kernel headers for {platform.release()} and no merged tree in {CACHE_DIR} (run: sudo make setup)"
    )


def export_for_bcc() -> None:
    src = kernel_source()
    if src:
        os.environ["BCC_KERNEL_SOURCE"] = src


def import_bcc() -> type:
    """BCC's BPF class, with the kernel headers it will need found first."""
    export_for_bcc()
    try:
        from bcc import BPF  # Debian's python3-bpfcc; PyPI's "bcc" is another project
    except ImportError:
        raise HeadersError(
            "python module 'bcc' not found: install Debian's python3-bpfcc "
            "and use a venv made with --system-site-packages (run: sudo make setup)"
        ) from None
    return BPF


if __name__ == "__main__":
    if sys.argv[1:] == ["--build"]:
        try:
            print(build_merged_tree())
        except (HeadersError, subprocess.CalledProcessError, OSError) as exc:
            print(f"kheaders: {exc}", file=sys.stderr)
            sys.exit(2)
    else:
        print(kernel_source() or "(host headers)")
