"""A store on S3-compatible object storage, with object lock: the lake, in buckets.

Layout (``s3://META/PREFIX`` is the location given to ``pql.Engine``)::

    META/PREFIX_pql/manifest.json          the manifest, exactly as a local lake keeps it
    mc-{tenant}-{region}-{subject}/         one bucket per tenant, storage region and subject:
      day=YYYY-MM-DD/part-{uuid}.parquet    object lock on, a default retention, tagged

Every data bucket is created with object lock enabled, a default retention (``lock_mode``,
``retention_days``) and the tags ``tenant`` and ``region``; every object is written with its own
retention, the same tags, and its SHA-256 and the engine's time of writing as metadata. An entry
of the manifest names an object as ``bucket/key``, the same relative path a local lake uses for
its file, so everything that reads paths (the residency adapter, reports) reads both alike.

An S3 server does not enforce every rule of object lock (a test server may let a compliance
retention be shortened, or a locked version be deleted, and any server lets a new version be
put over a locked key), so this store checks before it acts: it never writes over an existing
key, never shortens a retention, and deletes only what the lock it reads back allows
(PQL-S062, PQL-S063).

The endpoint and credentials come from the arguments or the usual AWS environment
(``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_REGION``/``AWS_DEFAULT_REGION``). State that is not data (the
ingest lock, adapters' journals and policy files, saved queries) is kept in a local state
directory (``state_dir``, ``PQL_S3_STATE``, or ``$XDG_STATE_HOME/pql/s3/META/PREFIX``). One
host writes a location at a time: the ingest lock is that directory's lock file. Needs the
``s3`` extra (``pip install 'pql[s3]'``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import polars as pl
import pyarrow as pa
from cachetools import LRUCache

from pql.catalog import Catalog, DataType, Subject
from pql.errors import InputError, PQLError, SafetyError
from pql.storage.base import (
    IngestReport,
    Partition,
    PartitionStats,
    Scan,
    conform,
    current_subject,
    empty_frame,
    micros,
    partitions_of,
    project,
    split_duplicates,
)
from pql.storage.lake import (
    MANIFEST_NAME,
    META_DIR,
    PARQUET_MAGIC,
    FileEntry,
    Manifest,
    _stats,
    bucket_name,
    dump,
    exclusive,
    ingest_report,
    parse_bucket,
)
from pql.storage.validate import check_extras, extra_columns, validate

__all__ = ["LOCK_MODES", "S3Lake", "S3Lock", "is_s3", "parse_location"]

SCHEME = "s3://"
LOCK_MODES = ("COMPLIANCE", "GOVERNANCE")
WRITERS = 8
"""How many objects an ingest puts, or a scan fetches, at once."""
READ_CACHE_BYTES = 256 << 20
"""How many bytes of decoded objects a store keeps in memory (objects never change)."""


def is_s3(location: object) -> bool:
    """Whether ``location`` is an ``s3://`` location (not a local directory)."""
    return isinstance(location, str) and location.startswith(SCHEME)


def parse_location(location: str) -> tuple[str, str]:
    """``s3://META/PREFIX`` -> (META, ``PREFIX/`` or ``""``); PQL-E170 when malformed."""
    rest = location[len(SCHEME) :] if is_s3(location) else ""
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    if not bucket or bucket.startswith("mc-") or any(c in bucket for c in " \\"):
        raise InputError(
            "PQL-E170",
            f"{location!r} is not an S3 location of a lake",
            hints=(
                "give s3://BUCKET or s3://BUCKET/PREFIX: the bucket holding the manifest "
                "(its name may not start with mc-, the prefix of data buckets)",
            ),
        )
    return bucket, f"{prefix}/" if prefix else ""


@dataclass(frozen=True, slots=True)
class S3Lock:
    """What the server says about one object: its lock, tags and metadata.

    ``mode`` is ``None`` when the object has no retention; ``bucket_locked`` says whether its
    bucket has object lock enabled at all.
    """

    path: str
    version: str | None
    bytes: int
    mode: str | None
    retain_until: datetime | None
    legal_hold: bool
    tags: dict[str, str]
    sha256: str | None
    written: datetime
    bucket_locked: bool


@dataclass(slots=True)
class _Keys:
    files: set[str] = field(default_factory=set)
    keys: pl.Series = field(default_factory=lambda: pl.Series(dtype=pl.String))


class S3Lake:
    """A :class:`~pql.storage.base.Store` on S3-compatible object storage (see the module docs)."""

    def __init__(
        self,
        location: str,
        catalog: Catalog,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        state_dir: Path | str | None = None,
        lock_mode: str = "COMPLIANCE",
        retention_days: int = 365,
        clock: Any = None,
    ) -> None:
        self.location = location
        self.meta_bucket, self.prefix = parse_location(location)
        if lock_mode.upper() not in LOCK_MODES or retention_days < 1:
            raise InputError(
                "PQL-E171",
                f"object lock {lock_mode!r} for {retention_days} days is not a lock",
                hints=("lock_mode is COMPLIANCE or GOVERNANCE, retention_days at least 1",),
            )
        self.lock_mode = lock_mode.upper()
        self.retention_days = retention_days
        self._clock = clock if clock is not None else (lambda: datetime.now(UTC))
        self._boto = _boto3()
        self._endpoint = endpoint_url or _env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
        self._region = region or _env("AWS_REGION", "AWS_DEFAULT_REGION") or "us-east-1"
        self._credentials = {
            k: v
            for k, v in (
                ("aws_access_key_id", access_key),
                ("aws_secret_access_key", secret_key),
                ("aws_session_token", session_token),
            )
            if v
        }
        self._clients: dict[str, Any] = {}
        self.client = self._client(self._region)
        self._catalog = catalog
        self._root = Path(state_dir) if state_dir is not None else _default_state(self)
        self._lock = threading.RLock()
        self._manifest = Manifest()
        self._etag: str | None = None
        self._keys: dict[tuple[str, str], _Keys] = {}
        self._buckets: set[str] = set()
        self._locked: set[str] = set()
        self._frames: LRUCache[str, pl.DataFrame] = LRUCache(
            READ_CACHE_BYTES, getsizeof=lambda f: max(1, int(f.estimated_size()))
        )
        self._refresh()

    # -- where -------------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The local state directory (adapters' journals and policy files, saved queries)."""
        return self._root

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    @property
    def manifest_key(self) -> str:
        return f"{self.prefix}{META_DIR}/{MANIFEST_NAME}"

    def manifest(self) -> Manifest:
        """The committed state, reloaded if another writer changed it."""
        return self._refresh()

    # -- Store -------------------------------------------------------------------------------

    def ingest(self, subject: Subject, data: pl.DataFrame | pa.Table) -> IngestReport:
        """Validate, drop duplicates, write the new rows as locked objects, commit the manifest."""
        declared = current_subject(self._catalog, subject)
        frame = validate(declared, data, self._catalog)
        if frame.height == 0:
            return IngestReport(declared.name, 0, 0, 0, (), 0, ())
        with self._lock, exclusive(self._root):
            manifest = self._refresh()
            frame = check_extras(declared, frame, self._catalog)
            stored = {
                tenant: self._stored_keys(manifest, tenant, declared)
                for tenant in frame.get_column("tenant").unique().to_list()
            }
            new, duplicate_keys, duplicates = split_duplicates(declared, frame, stored)
            entries = self._commit(manifest, declared, new) if new.height else []
        return ingest_report(declared, frame, new, duplicates, duplicate_keys, entries)

    def scan(
        self,
        tenant: str,
        subject: Subject,
        start: datetime,
        end: datetime,
        columns: Sequence[str] | None = None,
    ) -> Scan:
        """The rows of the objects of ``tenant``'s ``subject`` whose time range meets the window."""
        manifest = self._refresh()
        current = current_subject(self._catalog, subject, tenant)
        names = project(current, columns)
        low, high = micros(start), micros(end)
        files = [
            e
            for e in manifest.files_of(tenant, current.name)
            if e.ts_min <= high and e.ts_max >= low
        ]
        if not files:
            return Scan(empty_frame(current).lazy().select(names), 0, 0, False)
        schema = pl.Schema(current.polars_schema())
        frames = [conform(frame, current).cast(schema) for frame in self.read_all(files)]
        frame = pl.concat(frames, how="vertical").lazy().select(names)
        return Scan(frame, len(files), sum(e.rows for e in files), False)

    def version(self, tenant: str) -> int:
        return self._refresh().versions.get(tenant, 0)

    def tenants(self) -> tuple[str, ...]:
        return self._refresh().tenants()

    def extras(self, tenant: str) -> dict[str, dict[str, DataType]]:
        return self._refresh().extras_of(tenant)

    def stats(self, tenant: str, subject: str) -> list[PartitionStats]:
        return _stats(self._refresh().files_of(tenant, subject))

    def storage_region(self, tenant: str, region: str) -> str:
        return self._refresh().homes.get(tenant, region)

    def diagnose(self, tenant: str, exc: BaseException) -> PQLError | None:
        """PQL-E102 naming the first of ``tenant``'s objects that cannot be read, or ``None``."""
        for entry in sorted(self._refresh().files, key=lambda e: e.path):
            if entry.tenant != tenant:
                continue
            self._frames.pop(entry.path, None)
            try:
                self.read(entry)
            except InputError as found:
                return found
        return None

    # -- objects -----------------------------------------------------------------------------

    def read(self, entry: FileEntry) -> pl.DataFrame:
        """The rows of one committed object (checked against the manifest; cached, as objects
        never change)."""
        cached = self._frames.get(entry.path)
        if cached is not None:
            return cached
        payload = self.get_bytes(entry.path)
        problem = _damage(payload, entry.bytes)
        if problem is None:
            try:
                frame = pl.read_parquet(io.BytesIO(payload))
            except (pl.exceptions.PolarsError, OSError) as exc:
                problem = f"Parquet says: {exc}"
        if problem is not None:
            raise InputError(
                "PQL-E102",
                f"the object {entry.path!r} of tenant {entry.tenant!r} in {self.location} "
                f"cannot be read: {problem}",
                hints=("restore the object's previous version (the bucket keeps every version)",),
                details={"path": entry.path, "tenant": entry.tenant, "problem": problem},
            )
        self._frames[entry.path] = frame
        return frame

    def read_all(self, entries: Sequence[FileEntry]) -> list[pl.DataFrame]:
        """The rows of several objects, fetched concurrently (requests wait on the network)."""
        if len(entries) <= 1:
            return [self.read(e) for e in entries]
        with ThreadPoolExecutor(max_workers=min(WRITERS, len(entries))) as pool:
            return list(pool.map(self.read, entries))

    def get_bytes(self, path: str) -> bytes:
        """The current bytes of the object at ``bucket/key`` (empty when it is missing)."""
        bucket, key = _split(path)
        try:
            body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
            return bytes(body.read())
        except self._boto.ClientError as exc:
            if _code(exc) in {"NoSuchKey", "404", "NoSuchBucket"}:
                return b""
            raise self._error(exc, f"read {path}") from None

    def digest(self, entry: FileEntry | str) -> str:
        """The SHA-256 of an object's current bytes (hex)."""
        path = entry.path if isinstance(entry, FileEntry) else entry
        return hashlib.sha256(self.get_bytes(path)).hexdigest()

    def objects(self) -> Iterator[str]:
        """Every data object (``bucket/key``) in every ``mc-`` bucket, sorted."""
        try:
            buckets = sorted(b["Name"] for b in self.client.list_buckets().get("Buckets", []))
        except self._boto.ClientError as exc:
            raise self._error(exc, "list the buckets") from None
        for bucket in buckets:
            if parse_bucket(bucket) is None:
                continue
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for page in pages:
                for item in page.get("Contents", []):
                    yield f"{bucket}/{item['Key']}"

    def lock_of(self, path: str) -> S3Lock | None:
        """The lock, tags and metadata of the current version of ``path``; ``None`` if gone."""
        bucket, key = _split(path)
        try:
            head = self.client.head_object(Bucket=bucket, Key=key)
            tags = self.client.get_object_tagging(Bucket=bucket, Key=key).get("TagSet", [])
        except self._boto.ClientError as exc:
            if _code(exc) in {"NoSuchKey", "404", "NoSuchBucket"}:
                return None
            raise self._error(exc, f"read the lock of {path}") from None
        meta = {str(k).lower(): str(v) for k, v in head.get("Metadata", {}).items()}
        until = head.get("ObjectLockRetainUntilDate")
        written = _time(meta.get("written")) or head["LastModified"]
        return S3Lock(
            path=path,
            version=head.get("VersionId"),
            bytes=int(head.get("ContentLength", 0)),
            mode=head.get("ObjectLockMode"),
            retain_until=until.astimezone(UTC) if until is not None else None,
            legal_hold=head.get("ObjectLockLegalHoldStatus") == "ON",
            tags={str(t["Key"]): str(t["Value"]) for t in tags},
            sha256=meta.get("sha256"),
            written=written.astimezone(UTC),
            bucket_locked=self.bucket_locked(bucket),
        )

    def bucket_locked(self, bucket: str) -> bool:
        """Whether ``bucket`` has object lock enabled (once on, S3 never turns it off)."""
        if bucket in self._locked:
            return True
        try:
            config = self.client.get_object_lock_configuration(Bucket=bucket)
        except self._boto.ClientError:
            return False
        lock = config.get("ObjectLockConfiguration", {})
        if lock.get("ObjectLockEnabled") != "Enabled":
            return False
        self._locked.add(bucket)
        return True

    def extend_retention(
        self, path: str, mode: str, until: datetime, legal_hold: bool = False
    ) -> None:
        """Lengthen an object's retention (and put a legal hold on it); never shortens it, nor
        weakens compliance to governance: those are kept as they are."""
        lock = self.lock_of(path)
        if lock is None:
            raise InputError("PQL-E404", f"{path} is not a stored object of {self.location}")
        bucket, key = _split(path)
        stronger = lock.mode == "COMPLIANCE" or mode.upper() == "COMPLIANCE"
        wanted = "COMPLIANCE" if stronger else "GOVERNANCE"
        until = _whole_seconds(until)
        if lock.retain_until is None or until > lock.retain_until or wanted != lock.mode:
            later = max(until, lock.retain_until or until)
            # turning governance into compliance strengthens the lock, but S3 asks for the
            # bypass header to change a governance retention at all
            bypass = {"BypassGovernanceRetention": True} if lock.mode == "GOVERNANCE" else {}
            self.client.put_object_retention(
                Bucket=bucket,
                Key=key,
                Retention={"Mode": wanted, "RetainUntilDate": later},
                **bypass,
            )
        if legal_hold and not lock.legal_hold:
            self.client.put_object_legal_hold(Bucket=bucket, Key=key, LegalHold={"Status": "ON"})

    def delete_object(
        self, path: str, *, now: datetime | None = None, bypass_governance: bool = False
    ) -> S3Lock:
        """Delete the current version of ``path`` if its lock, as read back, allows it.

        The server may not refuse (a test server deletes locked versions), so this refuses
        itself: a legal hold or a compliance retention not yet over (PQL-S062), a governance
        retention without ``bypass_governance`` (PQL-S063). Returns the lock it went by.
        """
        lock = self.lock_of(path)
        if lock is None:
            raise InputError("PQL-E404", f"{path} is not a stored object of {self.location}")
        check_lock(lock, "delete", now or self._clock(), bypass_governance)
        bucket, key = _split(path)
        extra = {"BypassGovernanceRetention": True} if bypass_governance else {}
        version = {"VersionId": lock.version} if lock.version else {}
        self.client.delete_object(Bucket=bucket, Key=key, **version, **extra)
        self._frames.pop(path, None)
        return lock

    # -- internals ---------------------------------------------------------------------------

    def _client(self, region: str) -> Any:
        if region not in self._clients:
            config = self._boto.Config(
                retries={"max_attempts": 3, "mode": "standard"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )
            self._clients[region] = self._boto.client(
                "s3",
                endpoint_url=self._endpoint,
                region_name=region,
                config=config,
                **self._credentials,
            )
        return self._clients[region]

    def _error(self, exc: Exception, action: str) -> InputError:
        return InputError(
            "PQL-E172",
            f"the S3 store {self.location} could not {action}: {exc}",
            hints=(
                "check the endpoint and credentials (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, "
                "AWS_SECRET_ACCESS_KEY) and that the server is up",
            ),
        )

    def _refresh(self) -> Manifest:
        """The manifest, fetched again only when its ETag changed; syncs extras into the catalog."""
        with self._lock:
            try:
                head = self.client.head_object(Bucket=self.meta_bucket, Key=self.manifest_key)
            except self._boto.ClientError as exc:
                if _code(exc) in {"404", "NoSuchKey", "NoSuchBucket"}:
                    return self._manifest
                raise self._error(exc, "read its manifest") from None
            except self._boto.BotoCoreError as exc:
                raise self._error(exc, "reach its server") from None
            if head["ETag"] == self._etag:
                return self._manifest
            got = self.client.get_object(Bucket=self.meta_bucket, Key=self.manifest_key)
            try:
                manifest = Manifest.from_json(json.loads(got["Body"].read()))
            except (ValueError, KeyError, TypeError) as exc:
                raise InputError(
                    "PQL-E059",
                    f"the manifest of {self.location} cannot be read: {exc}",
                    hints=("restore a previous version of it (the bucket keeps versions)",),
                ) from exc
            for tenant, subjects in manifest.extras.items():
                for subject, columns in subjects.items():
                    if subject in self._catalog:
                        self._catalog.add_extras(tenant, subject, columns)
            self._manifest, self._etag = manifest, got["ETag"]
            return manifest

    def _stored_keys(self, manifest: Manifest, tenant: str, subject: Subject) -> pl.Series:
        cached = self._keys.setdefault((tenant, subject.name), _Keys())
        unread = [e for e in manifest.files_of(tenant, subject.name) if e.path not in cached.files]
        if unread:
            keys = [f.get_column(subject.key).cast(pl.String) for f in self.read_all(unread)]
            cached.keys = pl.concat([cached.keys, *keys]).rechunk()
            cached.files.update(e.path for e in unread)
        return cached.keys

    def _commit(self, manifest: Manifest, subject: Subject, new: pl.DataFrame) -> list[FileEntry]:
        self._ensure_meta()
        now = self._clock()
        parts = partitions_of(subject, new)
        for tenant, storage in sorted(
            {(p.tenant, manifest.homes.get(p.tenant, p.region)) for p in parts}
        ):
            self._ensure_bucket(bucket_name(tenant, storage, subject.name), tenant, storage)
        with ThreadPoolExecutor(max_workers=min(WRITERS, len(parts))) as pool:
            entries = list(pool.map(lambda part: self._put(subject, manifest, part, now), parts))
        extras = extra_columns(subject, new)
        tenants = sorted({e.tenant for e in entries})
        committed = manifest.commit(entries, {t: {subject.name: extras} for t in tenants})
        put = self.client.put_object(
            Bucket=self.meta_bucket,
            Key=self.manifest_key,
            Body=dump(committed),
            ContentType="application/json",
        )
        self._manifest, self._etag = committed, put["ETag"]
        for tenant in tenants:
            self._catalog.add_extras(tenant, subject.name, extras)
        for (tenant,), rows in new.partition_by("tenant", as_dict=True).items():
            cached = self._keys.get((str(tenant), subject.name))
            if cached is not None:
                fresh = rows.get_column(subject.key).cast(pl.String)
                cached.keys = pl.concat([cached.keys, fresh]).rechunk()
                cached.files.update(e.path for e in entries if e.tenant == tenant)
        return entries

    def _put(self, subject: Subject, manifest: Manifest, part: Partition, now: datetime) -> Any:
        """Write one day partition as a new locked, tagged object; never over an existing key."""
        storage = manifest.homes.get(part.tenant, part.region)
        bucket = bucket_name(part.tenant, storage, subject.name)
        key = f"day={part.day.isoformat()}/part-{uuid.uuid4().hex}.parquet"
        sink = io.BytesIO()
        part.rows.write_parquet(sink, statistics=True)
        payload = sink.getvalue()
        if self.exists(f"{bucket}/{key}"):  # a server lets a new version in over a locked one
            raise SafetyError(
                "PQL-S062", f"object {bucket}/{key} exists: a locked object is never written over"
            )
        tags = f"tenant={quote(part.tenant)}&region={quote(storage)}"
        self.client.put_object(
            Bucket=bucket,
            Key=key,
            Body=payload,
            ContentMD5=_md5(payload),
            ObjectLockMode=self.lock_mode,
            ObjectLockRetainUntilDate=_whole_seconds(now + timedelta(days=self.retention_days)),
            Tagging=tags,
            Metadata={"sha256": hashlib.sha256(payload).hexdigest(), "written": now.isoformat()},
        )
        self._frames[f"{bucket}/{key}"] = part.rows
        return FileEntry(
            path=f"{bucket}/{key}",
            tenant=part.tenant,
            region=part.region,
            subject=subject.name,
            day=part.day,
            rows=part.rows.height,
            bytes=len(payload),
            ts_min=part.ts_min,
            ts_max=part.ts_max,
            storage=storage,
        )

    def exists(self, path: str) -> bool:
        """Whether ``path`` (``bucket/key``) has a current version."""
        bucket, key = _split(path)
        try:
            self.client.head_object(Bucket=bucket, Key=key)
        except self._boto.ClientError as exc:
            if _code(exc) in {"NoSuchKey", "404", "NoSuchBucket"}:
                return False
            raise self._error(exc, f"look for {bucket}/{key}") from None
        return True

    def _ensure_meta(self) -> None:
        if self.meta_bucket in self._buckets:
            return
        try:
            self.client.head_bucket(Bucket=self.meta_bucket)
        except self._boto.ClientError:
            self._create(self.meta_bucket, self._region, lock=False)
            self.client.put_bucket_versioning(
                Bucket=self.meta_bucket, VersioningConfiguration={"Status": "Enabled"}
            )
        self._buckets.add(self.meta_bucket)

    def _ensure_bucket(self, bucket: str, tenant: str, region: str) -> None:
        """Create a data bucket (object lock, default retention, tags) unless it exists."""
        if bucket in self._buckets:
            return
        try:
            self.client.head_bucket(Bucket=bucket)
        except self._boto.ClientError:
            self._create(bucket, region, lock=True)
            self.client.put_object_lock_configuration(
                Bucket=bucket,
                ObjectLockConfiguration={
                    "ObjectLockEnabled": "Enabled",
                    "Rule": {
                        "DefaultRetention": {"Mode": self.lock_mode, "Days": self.retention_days}
                    },
                },
            )
            self.client.put_bucket_tagging(
                Bucket=bucket,
                Tagging={
                    "TagSet": [
                        {"Key": "tenant", "Value": tenant},
                        {"Key": "region", "Value": region},
                    ]
                },
            )
        self._buckets.add(bucket)

    def _create(self, bucket: str, region: str, *, lock: bool) -> None:
        """Create ``bucket`` in ``region`` (the default region for ``global``)."""
        where = region if region.count("-") == 2 else self._region
        options: dict[str, Any] = {"Bucket": bucket}
        if lock:
            options["ObjectLockEnabledForBucket"] = True
        if where != "us-east-1":
            options["CreateBucketConfiguration"] = {"LocationConstraint": where}
        try:
            self._client(where).create_bucket(**options)
        except self._boto.ClientError as exc:
            if _code(exc) not in {"BucketAlreadyOwnedByYou"}:
                raise self._error(exc, f"create the bucket {bucket}") from None


def check_lock(lock: S3Lock, action: str, now: datetime, bypass_governance: bool) -> None:
    """Refuse ``action`` on an object its lock protects (PQL-S062, PQL-S063)."""
    where = (
        f"object {lock.path} (tenant {lock.tags.get('tenant')}, region {lock.tags.get('region')})"
    )
    if lock.legal_hold:
        raise SafetyError(
            "PQL-S062",
            f"cannot {action} {where}: it is under legal hold",
            hints=("a legal hold is lifted only by whoever placed it",),
        )
    if lock.mode is None or lock.retain_until is None or now >= lock.retain_until:
        return
    if lock.mode == "COMPLIANCE":
        raise SafetyError(
            "PQL-S062",
            f"cannot {action} {where}: compliance retention until {lock.retain_until.isoformat()}",
            hints=("nobody can remove a compliance-locked object before its retention date",),
        )
    if not bypass_governance:
        raise SafetyError(
            "PQL-S063",
            f"cannot {action} {where}: governance retention until {lock.retain_until.isoformat()}",
            hints=("pql residency delete --bypass-governance --who NAME removes it, audited",),
        )


# -- functions ---------------------------------------------------------------------------------


class _Boto:
    """boto3 and the exception types, imported only when an S3 store is opened."""

    def __init__(self) -> None:
        import boto3
        import botocore.config
        import botocore.exceptions

        self.client = boto3.client
        self.Config = botocore.config.Config
        self.ClientError = botocore.exceptions.ClientError
        self.BotoCoreError = botocore.exceptions.BotoCoreError


def _boto3() -> _Boto:
    try:
        return _Boto()
    except ImportError:
        raise InputError(
            "PQL-E173",
            "an s3:// location needs boto3, which is not installed",
            hints=("pip install 'pql[s3]'",),
        ) from None


def _env(*names: str) -> str | None:
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    return None


def _default_state(lake: S3Lake) -> Path:
    if os.environ.get("PQL_S3_STATE"):
        return Path(os.environ["PQL_S3_STATE"])
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(base, "pql", "s3", lake.meta_bucket, *filter(None, lake.prefix.split("/")))


def _split(path: str) -> tuple[str, str]:
    bucket, _, key = path.partition("/")
    return bucket, key


def _code(exc: Any) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _md5(payload: bytes) -> str:
    import base64

    return base64.b64encode(hashlib.md5(payload, usedforsecurity=False).digest()).decode()


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _whole_seconds(moment: datetime) -> datetime:
    """``moment`` rounded up to a whole second (S3 keeps retention dates to the second)."""
    whole = moment.replace(microsecond=0)
    return whole if whole == moment else whole + timedelta(seconds=1)


def _damage(payload: bytes, expected: int) -> str | None:
    if not payload:
        return "it is missing"
    if len(payload) != expected:
        return f"it has {len(payload):,} bytes, the manifest says {expected:,}"
    if payload[:4] != PARQUET_MAGIC or payload[-4:] != PARQUET_MAGIC:
        return "it is not a Parquet file"
    return None
