#!/usr/bin/env python3
"""Checks the OCI image archive that tools/packaging/oci-image.py wrote, from
the layout itself: every digest and size, one layer holding one file
(/sockleak, byte for byte the released binary), the entrypoint and the
org.opencontainers.image.* labels.

Usage: check-oci.py IMAGE.tar BINARY VERSION
Exits 1 with the reasons when anything is wrong.
"""

import gzip
import hashlib
import io
import json
import sys
import tarfile

errors = []


def fail(msg):
    errors.append(msg)


def main():
    archive, binary_path, version = sys.argv[1:4]
    with open(binary_path, "rb") as f:
        binary = f.read()
    with tarfile.open(archive) as t:
        files = {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}

    def blob(desc, what):
        d = desc.get("digest", "")
        if not d.startswith("sha256:"):
            fail(f"{what}: digest {d!r} is not sha256")
            return b""
        data = files.get("blobs/sha256/" + d[len("sha256:"):])
        if data is None:
            fail(f"{what}: blob {d} missing")
            return b""
        if "sha256:" + hashlib.sha256(data).hexdigest() != d:
            fail(f"{what}: blob content does not match its digest {d}")
        if desc.get("size") != len(data):
            fail(f"{what}: size {desc.get('size')} but the blob has {len(data)} bytes")
        return data

    if json.loads(files.get("oci-layout", b"{}")).get("imageLayoutVersion") != "1.0.0":
        fail("oci-layout: imageLayoutVersion is not 1.0.0")
    index = json.loads(files["index.json"])
    if len(index.get("manifests", [])) != 1:
        fail(f"index.json: {len(index.get('manifests', []))} manifests, expected 1")
    mdesc = index["manifests"][0]
    if mdesc.get("annotations", {}).get("org.opencontainers.image.ref.name") != version:
        fail("index.json: ref.name is not the version")
    manifest = json.loads(blob(mdesc, "manifest"))
    config = json.loads(blob(manifest["config"], "config"))
    layers = manifest.get("layers", [])
    if len(layers) != 1:
        fail(f"manifest: {len(layers)} layers, expected 1 (the binary alone)")
    layer_gz = blob(layers[0], "layer")
    layer_tar = gzip.decompress(layer_gz)
    if config["rootfs"]["diff_ids"] != ["sha256:" + hashlib.sha256(layer_tar).hexdigest()]:
        fail("config: rootfs.diff_ids does not match the uncompressed layer")
    with tarfile.open(fileobj=io.BytesIO(layer_tar)) as lt:
        members = lt.getmembers()
        names = [m.name for m in members]
        if names != ["sockleak"]:
            fail(f"layer: holds {names}, expected only ['sockleak']")
        else:
            m = members[0]
            if m.mode & 0o777 != 0o755 or m.uid != 0 or m.gid != 0:
                fail(f"layer: sockleak mode {oct(m.mode)} uid {m.uid} gid {m.gid}")
            if lt.extractfile(m).read() != binary:
                fail("layer: sockleak differs from the released binary")
    c = config.get("config", {})
    if c.get("Entrypoint") != ["/sockleak"]:
        fail(f"config: Entrypoint {c.get('Entrypoint')!r}, expected ['/sockleak']")
    if config.get("os") != "linux" or config.get("architecture") != "amd64":
        fail("config: not linux/amd64")
    labels = c.get("Labels", {})
    want = {
        "org.opencontainers.image.title": "sockleak",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.licenses": "MIT OR Apache-2.0",
    }
    for k, v in want.items():
        if labels.get(k) != v:
            fail(f"config: label {k} = {labels.get(k)!r}, expected {v!r}")
    for k in ("org.opencontainers.image.revision", "org.opencontainers.image.created",
              "org.opencontainers.image.source", "org.opencontainers.image.description"):
        if not labels.get(k):
            fail(f"config: label {k} missing")
    if errors:
        for e in errors:
            print(f"check-oci: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"check-oci: ok: one layer, /sockleak ({len(binary)} bytes), entrypoint /sockleak, "
          f"{len(labels)} labels, revision {labels['org.opencontainers.image.revision']}")


if __name__ == "__main__":
    main()
