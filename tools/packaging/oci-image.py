#!/usr/bin/env python3
"""Writes an OCI image archive (an OCI image layout in one tar) holding only
the static sockleak binary: `FROM scratch` without a container engine or a
base image. Reproducible: every timestamp is SOURCE_DATE_EPOCH, so the same
binary and commit give the same digests.

Usage: oci-image.py BINARY OUT.tar --version V --revision COMMIT [--created EPOCH]

Load it with `podman load -i OUT.tar`, `skopeo copy oci-archive:OUT.tar ...`
or `ctr images import OUT.tar` (docs/packaging.md).
"""

import argparse
import datetime
import gzip
import hashlib
import io
import json
import tarfile

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_INDEX = "application/vnd.oci.image.index.v1+json"


def tar_bytes(members, mtime):
    """A tar (ustar, root-owned, fixed mtime) of (name, mode, data) members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, mode, data in members:
            info = tarfile.TarInfo(name)
            info.mtime = mtime
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = mode
                t.addfile(info)
            else:
                info.mode = mode
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("binary")
    ap.add_argument("out")
    ap.add_argument("--version", required=True)
    ap.add_argument("--revision", required=True)
    ap.add_argument("--created", type=int, default=0, help="seconds since the epoch")
    ap.add_argument("--source", default="https://example.invalid/sockleak")
    ap.add_argument("--name", default="docker.io/library/sockleak")
    args = ap.parse_args()

    with open(args.binary, "rb") as f:
        binary = f.read()
    created = (
        datetime.datetime.fromtimestamp(args.created, datetime.timezone.utc)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
    )

    # The one layer: /sockleak, nothing else (no shell, no libc, no /etc).
    layer_tar = tar_bytes([("sockleak", 0o755, binary)], args.created)
    # mtime=0 and no file name in the gzip header: the same tar always gives
    # the same compressed bytes.
    layer_gz = gzip.compress(layer_tar, compresslevel=9, mtime=0)

    labels = {
        "org.opencontainers.image.title": "sockleak",
        "org.opencontainers.image.description":
            "Find, explain and help fix leaked TCP connections and file descriptors on Linux",
        "org.opencontainers.image.version": args.version,
        "org.opencontainers.image.revision": args.revision,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.source": args.source,
        "org.opencontainers.image.url": args.source,
        "org.opencontainers.image.documentation": args.source,
        "org.opencontainers.image.licenses": "MIT OR Apache-2.0",
        "org.opencontainers.image.vendor": "sockleak developers",
    }
    config = {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": ["/sockleak"],
            # The exporter by default (the DaemonSet passes its own args);
            # `podman run IMAGE scan --json` replaces these.
            "Cmd": ["serve", "--listen=0.0.0.0:9915"],
            "ExposedPorts": {"9915/tcp": {}},
            "WorkingDir": "/",
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [digest(layer_tar)]},
        "history": [
            {"created": created, "created_by": "tools/packaging/oci-image.py: COPY sockleak /sockleak"}
        ],
    }
    config_b = canonical(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": digest(config_b), "size": len(config_b)},
        "layers": [{"mediaType": MT_LAYER, "digest": digest(layer_gz), "size": len(layer_gz)}],
        "annotations": labels,
    }
    manifest_b = canonical(manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [
            {
                "mediaType": MT_MANIFEST,
                "digest": digest(manifest_b),
                "size": len(manifest_b),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    # skopeo/podman: the tag inside the archive.
                    "org.opencontainers.image.ref.name": args.version,
                    # containerd (`ctr images import`): the full image name.
                    "io.containerd.image.name": f"{args.name}:{args.version}",
                },
            }
        ],
    }
    blobs = [(config_b), (layer_gz), (manifest_b)]
    members = [
        ("oci-layout", 0o644, canonical({"imageLayoutVersion": "1.0.0"})),
        ("index.json", 0o644, canonical(index)),
        ("blobs", 0o755, None),
        ("blobs/sha256", 0o755, None),
    ]
    for b in blobs:
        members.append(("blobs/sha256/" + hashlib.sha256(b).hexdigest(), 0o644, b))
    with open(args.out, "wb") as f:
        f.write(tar_bytes(members, args.created))
    print(f"oci-image: {args.out} manifest {digest(manifest_b)}")


if __name__ == "__main__":
    main()
