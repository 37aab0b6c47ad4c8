"""Redis key layout and value codec (versioned by the feature schema).

Keys (``{v}`` is ``SCHEMA_VERSION``)::

    encore:v{v}:user:{user_id}     hash  vec = float32 bytes [dim], stats = float32 bytes [len(USER_STATS)]
    encore:v{v}:plays:{user_id}    list  item ids, most recent first, at most RECENT_PLAYS_MAX
    encore:v{v}:skips:{user_id}    list  item ids, most recent first, at most RECENT_PLAYS_MAX

Vectors are packed little-endian float32, never strings.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from features.schema import SCHEMA_VERSION
from features.store import FeatureStoreError

PREFIX = f"encore:v{SCHEMA_VERSION}"


def user_key(user_id: str) -> str:
    return f"{PREFIX}:user:{user_id}"


def plays_key(user_id: str) -> str:
    return f"{PREFIX}:plays:{user_id}"


def skips_key(user_id: str) -> str:
    return f"{PREFIX}:skips:{user_id}"


def pack_f32(values: npt.NDArray[np.float32]) -> bytes:
    return np.ascontiguousarray(values, dtype="<f4").tobytes()


def unpack_f32(raw: bytes, expected_len: int, what: str) -> npt.NDArray[np.float32]:
    """Decode packed float32; ``FeatureStoreError`` when the length is not ``expected_len``."""
    if len(raw) != 4 * expected_len:
        raise FeatureStoreError(f"{what}: {len(raw)} bytes, expected {4 * expected_len} (schema mismatch?)")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)
