"""The disclosure pack: what a tenant was promised, in files, with a signed manifest.

``disclose(engine, tenant, out)`` writes into the folder ``out``:

================  ===============================================================================
file              what it holds
================  ===============================================================================
``profile.json``  the tenant's registry record (regions, budget, quotas, trusted keys, state)
``residency.json`` home and allowed regions, the tenant's buckets, and what the adapters that
                  answer ``pql_disclosure`` add under ``residency`` (policy, lock settings)
``keys.json``     each trusted signing key id with its SHA-256 fingerprint, window and status
``limits.json``   the limits the engine applies to the tenant's queries, its budget and quotas
``NAME.json``     any other section an adapter adds through ``pql_disclosure``
``MANIFEST.json`` the SHA-256 and size of every file above, the operator key's id and fingerprint
``MANIFEST.sig``  the operator's Ed25519 signature over ``MANIFEST.json`` (base64)
================  ===============================================================================

:func:`verify_pack` checks the signature, then every file against the manifest, and refuses any
file the manifest does not list. The operator key is made once per data directory by
:func:`create_operator_key` (``DATA/_pql/private/operator/ID.key``, mode 0600, in a 0700 folder).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pql.adapters.tenancy.registry import Registry, _iso
from pql.errors import AuthError, InputError
from pql.signing import KeyRing, SigningKey, format_time, new_kid

__all__ = [
    "FORMAT",
    "OPERATOR_DIR",
    "PackReport",
    "create_operator_key",
    "disclose",
    "fingerprint",
    "load_operator_key",
    "verify_pack",
]

FORMAT = "pql-disclosure-pack/1"
"""The pack's format; also the prefix of the signed bytes (domain separation)."""
OPERATOR_DIR = Path("_pql") / "private" / "operator"
MANIFEST = "MANIFEST.json"
SIGNATURE = "MANIFEST.sig"
CORE_FILES = ("profile.json", "residency.json", "keys.json", "limits.json")
_SECTION_RE = re.compile(r"[a-z][a-z0-9_-]{0,39}")


@dataclass(frozen=True, slots=True)
class PackReport:
    """What a written or verified pack holds."""

    tenant: str
    folder: str
    files: dict[str, str]
    """File name -> SHA-256 (hex)."""
    operator_kid: str
    operator_fingerprint: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "folder": self.folder,
            "files": dict(self.files),
            "operator_kid": self.operator_kid,
            "operator_fingerprint": self.operator_fingerprint,
        }


# -- the operator key ----------------------------------------------------------------------------


def fingerprint(key: Ed25519PublicKey) -> str:
    """``SHA256:`` and the hex SHA-256 of the key's 32 raw bytes."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + hashlib.sha256(raw).hexdigest()


def create_operator_key(data_dir: Path | str, *, kid: str | None = None) -> tuple[Path, Path]:
    """Make the data directory's operator key: ``ID.key`` (0600) and ``ID.pub``; refuse a second.

    Returns the paths of the private and the public key.
    """
    folder = Path(data_dir) / OPERATOR_DIR
    existing = sorted(folder.glob("*.key")) if folder.is_dir() else []
    if existing:
        raise InputError(
            "PQL-E233",
            f"the data directory already has an operator key ({existing[0].stem})",
            hints=(
                "one operator key per data directory; to rotate it, move the old one away first",
            ),
        )
    key = SigningKey.generate(kid if kid is not None else f"operator-{new_kid()}")
    private, public = key.write(folder)
    folder.chmod(0o700)
    folder.parent.chmod(0o700)
    return private, public


def load_operator_key(data_dir: Path | str, path: Path | str | None = None) -> SigningKey:
    """The operator key: the file ``path``, or the data directory's own (PQL-E232 when none)."""
    if path is not None:
        return SigningKey.from_file(path)
    folder = Path(data_dir) / OPERATOR_DIR
    found = sorted(folder.glob("*.key")) if folder.is_dir() else []
    if not found:
        raise InputError(
            "PQL-E232",
            "the data directory has no operator key to sign disclosure packs with",
            hints=("pql tenants operator-key create --data DIR (or give --signing-key FILE)",),
        )
    return SigningKey.from_file(found[0])


# -- writing -------------------------------------------------------------------------------------


def disclose(
    engine: Any,
    tenant: str,
    out: Path | str,
    *,
    now: datetime,
    keys_dir: Path | str | None = None,
    signing_key: SigningKey | None = None,
) -> PackReport:
    """Write ``tenant``'s disclosure pack into the folder ``out`` (new or empty) and sign it."""
    found = Registry(engine.data_dir).require(tenant)
    key = signing_key or load_operator_key(engine.data_dir)
    folder = Path(out)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError(
            "PQL-E231",
            f"{str(folder)!r} exists and is not an empty folder",
            hints=("give --out a new folder; a pack is never written over another",),
        )
    extra = _adapter_sections(engine, found.id)
    sections: dict[str, Any] = {
        "profile.json": found.to_dict(),
        "residency.json": _residency(
            engine, found.id, found.home_region, found.allowed_regions, extra.get("residency")
        ),
        "keys.json": _keys(engine, found.trusted_keys, keys_dir, now),
        "limits.json": _limits(engine, found),
    }
    for name, doc in extra.items():
        if name == "residency":
            continue
        sections[f"{name}.json"] = doc
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, Any]] = {}
    for name, doc in sections.items():
        data = (json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")
        (folder / name).write_bytes(data)
        files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    public = key.private_key.public_key()
    manifest = {
        "format": FORMAT,
        "tenant": found.id,
        "created": _iso(now),
        "operator_key": {
            "kid": key.kid,
            "fingerprint": fingerprint(public),
            "public_pem": key.public_pem().decode("ascii"),
        },
        "files": files,
    }
    body = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
    (folder / MANIFEST).write_bytes(body)
    (folder / SIGNATURE).write_text(key.sign(_signed(body)) + "\n", encoding="ascii")
    return PackReport(
        found.id,
        str(folder),
        {n: f["sha256"] for n, f in files.items()},
        key.kid,
        fingerprint(public),
    )


def _signed(body: bytes) -> bytes:
    return FORMAT.encode("ascii") + b"\n" + body


def _adapter_sections(engine: Any, tenant: str) -> dict[str, Any]:
    sections: dict[str, Any] = {}
    for answer in engine.adapters.call("pql_disclosure", engine=engine, tenant=tenant):
        if not isinstance(answer, Mapping):
            continue
        for name, doc in answer.items():
            reserved = {n.removesuffix(".json") for n in CORE_FILES} - {"residency"}
            if not isinstance(name, str) or not _SECTION_RE.fullmatch(name) or name in reserved:
                continue
            if name == "MANIFEST" or name in sections:
                continue
            sections[name] = doc
    return sections


def _residency(
    engine: Any, tenant: str, home: str, allowed: tuple[str, ...], extra: Any
) -> dict[str, Any]:
    buckets: list[dict[str, Any]] = []
    store = getattr(engine.store, "lake", engine.store)
    manifest = getattr(store, "manifest", None)
    if manifest is not None:
        from pql.storage.lake import bucket_name

        seen: dict[str, dict[str, Any]] = {}
        for entry in manifest().files:
            if entry.tenant != tenant:
                continue
            name = bucket_name(entry.tenant, entry.storage, entry.subject)
            bucket = seen.setdefault(
                name,
                {"bucket": name, "region": entry.storage, "subject": entry.subject, "files": 0},
            )
            bucket["files"] += 1
        buckets = [seen[n] for n in sorted(seen)]
    doc: dict[str, Any] = {
        "home_region": home,
        "allowed_regions": list(allowed),
        "buckets": buckets,
    }
    if isinstance(extra, Mapping):
        doc.update({k: v for k, v in extra.items() if k not in doc})
        doc["residency_adapter"] = True
    else:
        doc["residency_adapter"] = False
        doc["note"] = "no residency adapter answered: no policy or lock settings to disclose"
    return doc


def _keys(
    engine: Any, trusted: tuple[str, ...], keys_dir: Path | str | None, now: datetime
) -> dict[str, Any]:
    directory = Path(keys_dir) if keys_dir is not None else engine.data_dir / "_pql" / "keys"
    ring = KeyRing.from_dir(directory) if directory.is_dir() else KeyRing()
    out = []
    for kid in trusted:
        if kid not in ring:
            out.append({"kid": kid, "present": False})
            continue
        key = ring.get(kid)
        out.append(
            {
                "kid": kid,
                "present": True,
                "fingerprint": fingerprint(key.public_key),
                "status": key.status(now),
                "not_before": format_time(key.not_before) if key.not_before else None,
                "not_after": format_time(key.not_after) if key.not_after else None,
                "revoked": key.revoked,
            }
        )
    return {"as_of": _iso(now), "trusted_keys": out}


def _limits(engine: Any, tenant: Any) -> dict[str, Any]:
    limits = engine.limits_for(tenant.id)
    applied = {f.name: _plain(getattr(limits, f.name)) for f in fields(limits)}
    return {
        "applied": applied,
        "budget": asdict(tenant.budget),
        "quotas": asdict(tenant.quotas),
    }


def _plain(value: Any) -> Any:
    if isinstance(value, timedelta):
        return {"seconds": value.total_seconds()}
    return value


# -- verifying -----------------------------------------------------------------------------------


def _refuse(code: str, message: str, hint: str, file: str) -> AuthError:
    return AuthError(code, message, hints=(hint,), details={"file": file})


def verify_pack(folder: Path | str, *, public_key: Path | str | None = None) -> PackReport:
    """Check a pack: the signature over the manifest, then every file's SHA-256 and size.

    ``public_key`` (a PEM file) pins the operator key; without it the key the manifest names is
    used, which proves the pack is whole but not who made it. Every failure names the file:
    PQL-E230 (no pack), PQL-A110 (bad signature), PQL-A111 (another key), PQL-A112 (a file
    changed), PQL-A113 (a file missing), PQL-A114 (a file the manifest does not list).
    """
    root = Path(folder)
    if not (root / MANIFEST).is_file() or not (root / SIGNATURE).is_file():
        missing = MANIFEST if not (root / MANIFEST).is_file() else SIGNATURE
        raise InputError(
            "PQL-E230",
            f"{str(root)!r} is not a disclosure pack: {missing} is missing",
            hints=("give the folder `pql tenants disclose --out` wrote",),
            details={"file": missing},
        )
    body = (root / MANIFEST).read_bytes()
    try:
        manifest = json.loads(body)
        embedded = manifest["operator_key"]
        listed: dict[str, Any] = manifest["files"]
        tenant = str(manifest["tenant"])
        if manifest["format"] != FORMAT or not isinstance(listed, dict):
            raise ValueError(f"format {manifest.get('format')!r}")
        kid = str(embedded["kid"])
        key = _public(str(embedded["public_pem"]).encode("ascii"), MANIFEST)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _refuse(
            "PQL-A110",
            f"{MANIFEST} is not a valid disclosure manifest ({exc})",
            "the pack was damaged; ask for it again",
            MANIFEST,
        ) from None
    if public_key is not None:
        pinned = _public(_read(Path(public_key)), str(public_key))
        if fingerprint(pinned) != fingerprint(key):
            raise _refuse(
                "PQL-A111",
                f"{MANIFEST} was signed by key {kid!r} ({fingerprint(key)}), not by the key "
                f"given ({fingerprint(pinned)})",
                "check that --key is the operator key of the data directory the pack came from",
                MANIFEST,
            )
        key = pinned
    signature = (root / SIGNATURE).read_text(encoding="ascii", errors="replace").strip()
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, _signed(body))
    except (ValueError, InvalidSignature):
        raise _refuse(
            "PQL-A110",
            f"the signature in {SIGNATURE} does not match {MANIFEST}: the manifest or the "
            "signature was changed",
            "do not trust this pack; ask for it again",
            SIGNATURE,
        ) from None
    digests: dict[str, str] = {}
    for name, meta in sorted(listed.items()):
        path = root / name
        if "/" in name or name in (MANIFEST, SIGNATURE) or not path.is_file():
            raise _refuse(
                "PQL-A113",
                f"{name} is listed in {MANIFEST} but missing from the pack",
                "the pack is incomplete; ask for it again",
                name,
            )
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != meta.get("sha256") or len(data) != meta.get("bytes"):
            raise _refuse(
                "PQL-A112",
                f"{name} was changed: its SHA-256 is {digest}, the manifest says "
                f"{meta.get('sha256')}",
                "do not trust this file; ask for the pack again",
                name,
            )
        digests[name] = digest
    extra = sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and str(p.relative_to(root)) not in {*listed, MANIFEST, SIGNATURE}
    )
    if extra:
        raise _refuse(
            "PQL-A114",
            f"{extra[0]} is in the pack but not in {MANIFEST}: it was added after signing",
            "remove it or ask for the pack again; only listed files are vouched for",
            extra[0],
        )
    return PackReport(tenant, str(root), digests, kid, fingerprint(key))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(
            "PQL-E234", f"cannot read the public key {str(path)!r}: {exc.strerror}"
        ) from None


def _public(pem: bytes, where: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InputError("PQL-E234", f"{where} does not hold a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InputError("PQL-E234", f"{where} holds a {type(key).__name__}, not an Ed25519 key")
    return key
