#!/usr/bin/env python3
"""Writes the seed corpora of fuzz/corpus/ that are generated (tars, compressed tars and
the framed inputs of the other targets). Run from fuzz/: python3 seeds/make_seeds.py.
Needs gzip, zstd, bzip2 and xz on PATH. The output is deterministic (mtime 0 everywhere)."""

import gzip
import io
import json
import os
import subprocess
import tarfile

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def tar(entries, fmt=tarfile.PAX_FORMAT):
    """entries: (name, type, extra) where type is file/dir/symlink/link/char/block/fifo."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for entry in entries:
            name, kind = entry[0], entry[1]
            extra = entry[2] if len(entry) > 2 else {}
            info = tarfile.TarInfo(name)
            info.mtime = extra.get("mtime", 0)
            info.mode = extra.get("mode", 0o755 if kind == "dir" else 0o644)
            info.uid = extra.get("uid", 0)
            info.gid = extra.get("gid", 0)
            if "pax" in extra:
                info.pax_headers = extra["pax"]
            data = None
            if kind == "file":
                data = extra.get("data", b"hello\n")
                info.size = len(data)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = extra["target"]
            elif kind == "link":
                info.type = tarfile.LNKTYPE
                info.linkname = extra["target"]
            elif kind == "char":
                info.type = tarfile.CHRTYPE
                info.devmajor, info.devminor = extra.get("dev", (0, 0))
            elif kind == "block":
                info.type = tarfile.BLKTYPE
                info.devmajor, info.devminor = extra.get("dev", (7, 0))
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def compress(program, data):
    return subprocess.run([program, "-c", "-q"], input=data, capture_output=True, check=True).stdout


def layer_seeds():
    basic = tar([
        ("./", "dir"),
        ("bin/", "dir"),
        ("bin/busybox", "file", {"mode": 0o755, "data": b"\x7fELF fake"}),
        ("bin/sh", "symlink", {"target": "busybox"}),
        ("bin/ls", "link", {"target": "bin/busybox"}),
        ("etc/", "dir"),
        ("etc/passwd", "file", {"data": b"root:x:0:0:root:/root:/bin/sh\n"}),
        ("tmp/", "dir", {"mode": 0o1777}),
        ("usr/bin/su", "file", {"mode": 0o4755, "uid": 0, "gid": 0}),
        ("home/user/", "dir", {"uid": 1000, "gid": 1000, "mtime": 1700000000}),
    ])
    whiteouts = tar([
        ("etc/", "dir"),
        ("etc/.wh.passwd", "file", {"data": b""}),
        ("var/cache/", "dir"),
        ("var/cache/.wh..wh..opq", "file", {"data": b""}),
        ("var/cache/new", "file"),
        ("opt/.wh.app", "file", {"data": b""}),
    ])
    xattrs = tar([
        ("bin/ping", "file", {"pax": {"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00",
                                      "SCHILY.xattr.user.comment": "hi"}}),
        ("dir/", "dir", {"pax": {"SCHILY.xattr.trusted.overlay.opaque": "y"}}),
        ("long/" + "n" * 120 + "/" + "f" * 120, "file"),
    ])
    gnu_long = tar([
        ("a" * 150 + "/b", "file"),
        ("l", "symlink", {"target": "t" * 200}),
    ], fmt=tarfile.GNU_FORMAT)
    devices = tar([
        ("dev/", "dir"),
        ("dev/null", "char", {"dev": (1, 3), "mode": 0o666}),
        ("dev/loop0", "block", {"dev": (7, 0)}),
        ("run/fifo", "fifo"),
        ("char-outside-dev", "char", {"dev": (1, 3)}),
    ])
    escapes = tar([
        ("../escaped", "file"),
        ("/absolute", "file"),
        ("a/../../escaped", "file"),
        ("out", "symlink", {"target": "../canary"}),
        ("out/written", "file"),
        ("abs", "symlink", {"target": "/tmp"}),
        ("abs/written", "file"),
        ("hard", "link", {"target": "../canary/file"}),
        ("hard2", "link", {"target": "out/file"}),
        ("out/.wh.file", "file", {"data": b""}),
        ("dir/", "dir"),
        ("dir", "symlink", {"target": ".."}),
        ("dir/x", "file"),
        (".wh...", "file", {"data": b""}),
    ])
    replace = tar([
        ("a/", "dir"),
        ("a/b", "file"),
        ("a", "file"),
        ("a/", "dir"),
        ("a/b", "symlink", {"target": "/etc/shadow"}),
        ("a/b", "link", {"target": "a/b"}),
        ("c", "link", {"target": "a/b"}),
    ])
    layers = {"basic": basic, "whiteouts": whiteouts, "xattrs": xattrs, "gnu-long": gnu_long,
              "devices": devices, "escapes": escapes, "replace": replace}
    for name, data in layers.items():
        write("layer_unpack", f"layer-{name}.tar", b"\x00" + data)
    write("layer_unpack", "layer-basic.tar.gz", b"\x00" + gzip.compress(basic, mtime=0))
    write("layer_unpack", "layer-escapes.tar.gz", b"\x00" + gzip.compress(escapes, mtime=0))
    write("layer_unpack", "layer-whiteouts.tar.zst", b"\x00" + compress("zstd", whiteouts))
    # ADD into a root holding symlinks out of it: up -> .., canary -> ../canary,
    # abs -> /…/canary, file -> /…/canary/file, slash -> /.
    add = tar([
        ("up/canary/file", "file", {"data": b"overwritten"}),
        ("canary/dir/nested", "file"),
        ("abs/new", "file"),
        ("file", "file", {"data": b"replaced the link"}),
        ("slash/tmp/x", "file"),
        ("canary/", "dir", {"mode": 0o777}),
        ("up/", "dir", {"mode": 0o700}),
        ("up/.wh.canary", "file", {"data": b""}),
        ("hl", "link", {"target": "canary/file"}),
        ("hl", "file", {"data": b"through a hardlink"}),
    ])
    write("layer_unpack", "add-through-links.tar", b"\x01" + add)
    write("layer_unpack", "add-basic.tar", b"\x01" + basic)
    write("layer_unpack", "add-escapes.tar", b"\x01" + escapes)
    write("layer_unpack", "add-basic.tar.bz2", b"\x02" + compress("bzip2", basic))
    write("layer_unpack", "add-through-links.tar.xz", b"\x02" + compress("xz", add))
    write("layer_unpack", "add-whiteouts.tar.zst", b"\x02" + compress("zstd", whiteouts))
    write("layer_unpack", "add-not-an-archive.gz", b"\x02" + gzip.compress(b"just text\n" * 60, mtime=0))


def nul(*parts):
    return b"\x00".join(p if isinstance(p, bytes) else p.encode() for p in parts)


def passwd_seeds():
    passwd = open(os.path.join(CORPUS, "..", "seeds", "passwd")).read()
    group = open(os.path.join(CORPUS, "..", "seeds", "group")).read()
    alpine_passwd = open(os.path.join(CORPUS, "..", "seeds", "passwd.alpine")).read()
    alpine_group = open(os.path.join(CORPUS, "..", "seeds", "group.alpine")).read()
    for i, user in enumerate(["", "root", "0", "1000", "alice", "alice:video", "1000:1000",
                              "nobody:nogroup", "daemon:42", "4294967295", "65534:65534", "bob"]):
        write("passwd_group", f"debian-{i:02}", nul(user, passwd, group))
    for i, user in enumerate(["nginx", "www-data:www-data", "postgres", "70:70", "guest:users"]):
        write("passwd_group", f"alpine-{i:02}", nul(user, alpine_passwd, alpine_group))
    write("passwd_group", "malformed", nul("x", "x:x:notanumber:1\n::::\nx:x:1:2:3:4:5:6:7\n#c\n \n",
                                           "g:x:9999999999:\ng:x:1:x,,x, y\n"))


def credential_seeds():
    ok = b"\x01"
    answers = {
        "helper-ok": ok + json.dumps({"ServerURL": "https://index.docker.io/v1/", "Username": "alice",
                                      "Secret": "dckr_pat_0123456789"}).encode(),
        "helper-token": ok + b'{"ServerURL":"ghcr.io","Username":"<token>","Secret":"eyJhbGciOi..."}\n',
        "helper-not-found": b"\x00credentials not found in native keychain\n",
        "helper-failed": b"\x00error getting credentials - err: exit status 1, out: `GDBus.Error`",
        "helper-garbage": ok + b"Username: alice\nSecret: x\n",
        "helper-missing": ok + b'{"Username":"alice"}',
        "helper-null": ok + b'{"Username":null,"Secret":"s"}',
    }
    for name, data in answers.items():
        write("credential_helper", name, data)
    configs = {
        "config-auth": {"auths": {"https://index.docker.io/v1/": {"auth": "YWxpY2U6czNjcjN0"}},
                        "psFormat": "table"},
        "config-userpass": {"auths": {"127.0.0.1:5000": {"username": "me", "password": "pw"}}},
        "config-bad-base64": {"auths": {"ghcr.io": {"auth": "not base64!"}}},
        "config-no-colon": {"auths": {"https://ghcr.io/v2/": {"auth": "bm9jb2xvbg=="}}},
        "config-helpers": {"auths": {"ghcr.io": {}}, "credsStore": "desktop",
                           "credHelpers": {"gcr.io": "gcloud"}},
        "config-many": {"auths": {"docker.io": {"auth": "dTpw"}, "registry-1.docker.io": {"auth": "djpx"},
                                  "http://127.0.0.1:5000/v2/": {"auth": " dTpw "}, "": {"auth": ""}}},
    }
    for i, (name, config) in enumerate(configs.items()):
        flags = bytes([(i % 4) << 1])
        write("credential_helper", name, flags + json.dumps(config, indent=1).encode())
    write("credential_helper", "config-empty", b"\x00 \n")
    write("credential_helper", "config-array", b"\x02[1,2]")


if __name__ == "__main__":
    layer_seeds()
    passwd_seeds()
    credential_seeds()
