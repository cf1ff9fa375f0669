"""Compile BPF programs with BCC once; load them from a cache, without BCC, after that.

BCC compiles C at run time: ~0.9 s of clang and LLVM on this machine kind, most of
a scan's start-up (ZMap and masscan start in milliseconds). The bytecode depends
only on the source and the compile flags, so each program's instructions and the
specs of the maps they reference are kept in a root-only cache keyed by a hash of
both (plus kernel release and BCC version). A later scan with the same options
creates the maps and loads the programs itself through bpf(2): a few milliseconds,
and `bcc` is not even imported.

Every scan uses the same path: on a miss the program is compiled, saved, and then
loaded from what was saved, so a broken cache entry cannot hide behind a path the
tests do not take. An unreadable or stale entry is compiled again.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import hashlib
import importlib.metadata
import json
import os
import platform
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import bpfsys, kheaders

FORMAT = 1
KEEP = 64  # cache entries kept (newest by use)
_LD_IMM64 = 0x18
# ld_imm64 source registers that carry a map fd in imm (BCC emits the first; the
# second is a map value address, fd plus offset in the next instruction).
_PSEUDO_MAP_FD, _PSEUDO_MAP_VALUE = 1, 2


class LoadError(RuntimeError):
    """The program could not be compiled or loaded (one line; details in the log)."""


@dataclass(frozen=True)
class MapSpec:
    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int


def _bcc_version() -> str:
    try:
        return importlib.metadata.version("bcc")
    except importlib.metadata.PackageNotFoundError:
        return "?"


def cache_key(source: str, headers: dict[str, str], cflags: list[str]) -> str:
    h = hashlib.sha256()
    for part in (
        f"format={FORMAT}",
        platform.release(),
        _bcc_version(),
        source,
        *(f"{name}\0{text}" for name, text in sorted(headers.items())),
        *cflags,
    ):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def _cache_dir() -> str | None:
    override = os.environ.get("ZBANNER_BPF_CACHE_DIR")
    if os.environ.get("ZBANNER_BPF_CACHE") == "0":
        return None
    for d in [override] if override else kheaders.cache_dirs():
        sub = d if override else os.path.join(d, "bpf")
        if kheaders.private_dir(d) and kheaders.private_dir(sub):
            return sub
    return None


def compile_entry(source: str, cflags: list[str], progs: list[str], log_path: str) -> dict:
    """Compile with BCC and return what loading needs: instructions, relocations, map specs."""
    try:
        BPF = kheaders.import_bcc()
    except kheaders.HeadersError as exc:
        raise LoadError(str(exc)) from None
    from bcc.libbcc import lib  # after import_bcc: it found the headers first

    with stderr_to(log_path):
        try:
            b = BPF(text=source.encode(), cflags=cflags)
        except Exception as exc:  # bcc raises bare Exception
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise LoadError(f"cannot build the XDP program: {first} (log: {log_path})") from None
    try:
        by_fd: dict[int, MapSpec] = {}
        module = ctypes.c_void_p(b.module)
        for i in range(lib.bpf_num_tables(module)):
            fd = lib.bpf_table_fd_id(module, ctypes.c_size_t(i))
            info = bpfsys.map_info(fd)  # BCC names the kernel's maps after the C tables
            name = info.name.decode()
            if not name or any(s.name == name for s in by_fd.values()):
                raise LoadError(f"map {i}: no unique name in the kernel ({name!r})")
            by_fd[fd] = MapSpec(
                name, info.type, info.key_size, info.value_size, info.max_entries, info.map_flags
            )
        out_progs = {}
        for prog in progs:
            insns = b.dump_func(prog.encode())
            relocs = []
            for idx in range(len(insns) // 8):
                code, regs = insns[idx * 8], insns[idx * 8 + 1]
                src = regs >> 4
                if code == _LD_IMM64 and src in (_PSEUDO_MAP_FD, _PSEUDO_MAP_VALUE):
                    fd = int.from_bytes(insns[idx * 8 + 4 : idx * 8 + 8], "little", signed=True)
                    if fd not in by_fd:
                        raise LoadError(f"{prog}: instruction {idx} references an unknown map (fd {fd})")
                    relocs.append([idx, by_fd[fd].name])
            out_progs[prog] = {"insns": base64.b64encode(insns).decode(), "relocs": relocs}
        license = lib.bpf_module_license(b.module)
        return {
            "format": FORMAT,
            "license": license.decode() if license else "GPL",
            "kern_version": int(lib.bpf_module_kern_version(b.module)),
            "maps": [vars(s) for s in by_fd.values()],
            "progs": out_progs,
        }
    finally:
        with contextlib.suppress(Exception):
            b.cleanup()


@contextlib.contextmanager
def stderr_to(path: str) -> Iterator[None]:
    """BCC prints compiler logs straight to fd 2: keep them in a file, give the user one line."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError:
        os.close(saved)
        yield
        return
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class Loaded:
    """Maps and programs created from one cache entry; close() releases them all."""

    def __init__(self, entry: dict, log_path: str, compiled: bool):
        self.compiled = compiled  # this scan ran the compiler (cache miss)
        self.maps: dict[str, tuple[int, MapSpec]] = {}
        self.progs: dict[str, int] = {}
        self._ncpu = bpfsys.possible_cpus()
        try:
            for raw in entry["maps"]:
                spec = MapSpec(**raw)
                fd = bpfsys.map_create(
                    spec.type, spec.key_size, spec.value_size, spec.max_entries, spec.flags, spec.name
                )
                self.maps[spec.name] = (fd, spec)
            for name, prog in entry["progs"].items():
                insns = bytearray(base64.b64decode(prog["insns"]))
                for idx, map_name in prog["relocs"]:
                    insns[idx * 8 + 4 : idx * 8 + 8] = self.maps[map_name][0].to_bytes(4, "little")
                fd, log = bpfsys.prog_load(
                    bpfsys.BPF_PROG_TYPE_XDP, bytes(insns), entry["license"], name, entry["kern_version"]
                )
                if fd < 0:
                    with contextlib.suppress(OSError), open(log_path, "w") as fh:
                        fh.write(log)
                    raise LoadError(f"the kernel refused {name}: {log.splitlines()[0]} (log: {log_path})")
                self.progs[name] = fd
        except BaseException:
            self.close()
            raise

    def prog_fd(self, name: str) -> int:
        return self.progs[name]

    def map_fd(self, name: str) -> int:
        return self.maps[name][0]

    def update(self, name: str, index: int, value: bytes) -> None:
        fd, spec = self.maps[name]
        bpfsys.map_update(fd, index.to_bytes(spec.key_size, "little"), value.ljust(spec.value_size, b"\0"))

    def lookup(self, name: str, index: int) -> bytes:
        fd, spec = self.maps[name]
        return bpfsys.map_lookup(fd, index.to_bytes(spec.key_size, "little"), spec.value_size)

    def lookup_percpu(self, name: str, index: int) -> list[bytes]:
        """One value per possible CPU (each padded to 8 bytes, as the kernel lays them out)."""
        fd, spec = self.maps[name]
        stride = (spec.value_size + 7) // 8 * 8
        raw = bpfsys.map_lookup(fd, index.to_bytes(spec.key_size, "little"), stride * self._ncpu)
        return [raw[i * stride : i * stride + spec.value_size] for i in range(self._ncpu)]

    def close(self) -> None:
        for fd in self.progs.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        for fd, _ in self.maps.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.progs.clear()
        self.maps.clear()


def load(source_path: Path, cflags: list[str], progs: list[str], log_path: str) -> Loaded:
    """The programs `progs` of `source_path`, from the cache or freshly compiled."""
    source = source_path.read_text()
    headers = {p.name: p.read_text() for p in sorted(source_path.parent.glob("*.h"))}
    key = cache_key(source, headers, [*cflags, "progs=" + ",".join(progs)])
    cdir = _cache_dir()
    path = os.path.join(cdir, f"{key}.json") if cdir else None
    if path is not None:
        try:
            kheaders.check_cached_file(path)  # (a missing one: OSError, compiled below)
            with open(path) as fh:
                entry = json.load(fh)
            if entry.get("format") == FORMAT and set(entry["progs"]) == set(progs):
                loaded = Loaded(entry, log_path, compiled=False)
                with contextlib.suppress(OSError):
                    os.utime(path)  # pruning keeps what is used
                return loaded
        except (OSError, ValueError, KeyError, TypeError, bpfsys.BpfError, LoadError):
            pass  # missing, unreadable or refused: compile again
    entry = compile_entry(source, cflags, progs, log_path)
    if path is not None:
        _save(path, entry)
    try:
        return Loaded(entry, log_path, compiled=True)
    except bpfsys.BpfError as exc:
        raise LoadError(f"cannot create the program's maps: {exc.strerror}") from None


def _save(path: str, entry: dict) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        # 0600 whatever the umask: an entry others could write would be refused (check_cached_file).
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600), "w") as fh:
            json.dump(entry, fh)
        os.replace(tmp, path)  # atomic: a concurrent scan reads all of it or nothing
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return
    d = os.path.dirname(path)
    with contextlib.suppress(OSError):
        entries = [e for e in os.scandir(d) if e.name.endswith(".json")]
        entries.sort(key=lambda e: e.stat().st_mtime, reverse=True)
        for old in entries[KEEP:]:
            os.unlink(old.path)
