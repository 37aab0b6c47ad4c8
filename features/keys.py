"""Redis key layout and value codec (versioned by the feature schema).

Keys (``v`` is ``SCHEMA_VERSION``, ``B`` a bundle version; the braces are literal)::

    encore:v<v>:<B>:{<user_id>}:user hash  one load's user record (``versioned_user_key``), same fields as
                                           the unversioned one below; read only once its load is complete
    encore:v<v>:loaded:<B>           hash  the complete-marker of load ``B``: rows, dim, completed_ms
    encore:v<v>:active               string the version whose load completed last
    encore:v<v>:{<user_id>}:user     hash  vec = float32 bytes [dim], stats = float32 bytes [len(USER_STATS)],
                                           known = int32 bytes [n_known] (item indices, ascending)
    encore:v<v>:{<user_id>}:plays    list  item ids, most recent first, at most RECENT_PLAYS_MAX
    encore:v<v>:{<user_id>}:skips    list  item ids, most recent first, at most RECENT_PLAYS_MAX

The bundle version is outside the braces (``check_version`` refuses ``{``, ``}``, ``:``, ``*`` and
whitespace in it), so the hash tag stays the user id. ``plays``/``skips`` are live state
(RecordEvents) and stay unversioned.

``{<user_id>}`` is a Redis Cluster hash tag: only the text between the first ``{`` and the next
``}`` is hashed, so a user's three keys share one slot (one node). That keeps ``get_user`` one
round trip to one node and lets ``record_events`` run MULTI/EXEC on a cluster. A user's three
keys are identical up to and including the closing brace, so they share a slot even when the
id contains braces, with one exception: an id starting with ``}`` makes the tag empty, and
Redis then hashes each whole key (on a cluster ``get_user`` still works, ``record_events``
fails with a cross-slot error for that user).

Vectors are packed little-endian float32, never strings. ``known`` is the user's known items
(what the served model was fit on; ``KnownItemsFilter`` removes them) as packed little-endian int32
indices into the bundle's catalog, so like ``vec`` it belongs to the bundle whose snapshot wrote it
(``encore serve --load-features`` rewrites both); empty bytes when the user knows nothing.
"""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt

from features.schema import SCHEMA_VERSION
from features.store import FeatureStoreError

PREFIX = f"encore:v{SCHEMA_VERSION}"


ACTIVE_KEY = f"{PREFIX}:active"
_BAD_VERSION = re.compile(r"[{}:*?\[\]\s]")


def check_version(version: str) -> str:
    """``version`` when it is usable in a key (non-empty, no braces/colon/glob/space), else ``FeatureStoreError``."""
    if not version or _BAD_VERSION.search(version):
        raise FeatureStoreError(f"bundle version {version!r} cannot name a Redis load (no {{}}:*?[] or spaces)")
    return version


def user_key(user_id: str, version: str | None = None) -> str:
    """The user hash: unversioned (``version`` None; the legacy layout) or load ``version``'s."""
    if version is None:
        return f"{PREFIX}:{{{user_id}}}:user"
    return f"{PREFIX}:{version}:{{{user_id}}}:user"


def marker_key(version: str) -> str:
    return f"{PREFIX}:loaded:{version}"


def version_pattern(version: str) -> str:
    """SCAN pattern of every user hash of load ``version``."""
    return f"{PREFIX}:{version}:{{*}}:user"


def plays_key(user_id: str) -> str:
    return f"{PREFIX}:{{{user_id}}}:plays"


def skips_key(user_id: str) -> str:
    return f"{PREFIX}:{{{user_id}}}:skips"


def pack_f32(values: npt.NDArray[np.float32]) -> bytes:
    return np.ascontiguousarray(values, dtype="<f4").tobytes()


def pack_i32(values: npt.NDArray[np.integer]) -> bytes:
    return np.ascontiguousarray(values, dtype="<i4").tobytes()


def unpack_i32(raw: bytes, what: str) -> npt.NDArray[np.int32]:
    """Decode packed int32; ``FeatureStoreError`` when the length is not a multiple of 4."""
    if len(raw) % 4:
        raise FeatureStoreError(f"{what}: {len(raw)} bytes is not a whole number of int32 values")
    return np.frombuffer(raw, dtype="<i4").astype(np.int32)


def unpack_f32(raw: bytes, expected_len: int, what: str) -> npt.NDArray[np.float32]:
    """Decode packed float32; ``FeatureStoreError`` when the length is not ``expected_len``."""
    if len(raw) != 4 * expected_len:
        raise FeatureStoreError(f"{what}: {len(raw)} bytes, expected {4 * expected_len} (schema mismatch?)")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)
