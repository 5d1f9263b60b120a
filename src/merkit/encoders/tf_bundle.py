"""Read a TensorFlow checkpoint (tensor bundle) without TensorFlow.

A TF ≥ 1.x checkpoint is a pair of files. ``<prefix>.index`` is a LevelDB-format sorted table
(SSTable): data blocks of prefix-compressed ``key -> value`` entries, an index block pointing at
them, and a 48-byte footer. Each key is a tensor name; each value is a serialized
``BundleEntryProto`` (dtype, shape, shard, byte offset, byte size, masked CRC32C). The empty key
holds the ``BundleHeaderProto``. ``<prefix>.data-00000-of-00001`` is the raw little-endian bytes
of every tensor, concatenated.

Only what merkit's weight conversion needs is read: uncompressed tables, one shard, numeric
dtypes, and unsliced tensors (TF writes bundles that way). Everything else raises
:class:`BundleError` naming the file. The formats are documented in TensorFlow's
``tensor_bundle.proto`` and LevelDB's ``table_format.md``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

__all__ = ["BundleError", "read_bundle", "list_bundle", "crc32c", "masked_crc32c"]

_TABLE_MAGIC = 0xDB4775248B80FB57  # LevelDB table footer magic, little-endian uint64
_FOOTER_LEN = 48  # two block handles padded to 40 bytes, then the 8-byte magic
_BLOCK_TRAILER_LEN = 5  # 1 byte compression type + 4 bytes masked CRC32C

# TensorFlow's DataType enum (types.proto) -> numpy little-endian dtype
_DTYPES = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    19: np.dtype("<f2"),  # DT_HALF
}


class BundleError(ValueError):
    """A checkpoint file that is not a bundle merkit can read."""


def _crc_table() -> np.ndarray:
    poly = 0x82F63B78  # CRC-32C (Castagnoli), reflected
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ poly, table >> 1).astype(np.uint32)
    return table


_CRC_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data`` (the checksum LevelDB and TF bundles use)."""
    table = _CRC_TABLE.tolist()
    crc = 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """LevelDB's masked CRC: stored CRCs are rotated and offset so that a CRC of data that
    itself contains CRCs is not degenerate."""
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise BundleError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of a serialized protobuf message: varints as ints,
    fixed32/fixed64 as ints, length-delimited fields as bytes."""
    fields = []
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            (value,) = struct.unpack_from("<Q", buf, pos)
            pos += 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value = bytes(buf[pos : pos + n])
            pos += n
        elif wire == 5:
            (value,) = struct.unpack_from("<I", buf, pos)
            pos += 4
        else:
            raise BundleError(f"unsupported protobuf wire type {wire}")
        fields.append((number, value))
    return fields


def _block(data: bytes, offset: int, size: int, path: Path) -> list[tuple[bytes, bytes]]:
    """The ``key -> value`` entries of one table block, its checksum verified."""
    end = offset + size
    if end + _BLOCK_TRAILER_LEN > len(data):
        raise BundleError(f"{path}: block past the end of the file")
    contents = data[offset:end]
    compression = data[end]
    (stored_crc,) = struct.unpack_from("<I", data, end + 1)
    if compression != 0:
        raise BundleError(f"{path}: compressed table blocks (type {compression}) are not supported")
    # the block CRC covers the contents and the compression byte
    if masked_crc32c(data[offset : end + 1]) != stored_crc:
        raise BundleError(f"{path}: block checksum mismatch at offset {offset}")
    (num_restarts,) = struct.unpack_from("<I", contents, len(contents) - 4)
    limit = len(contents) - 4 - 4 * num_restarts
    entries = []
    pos = 0
    key = b""
    while pos < limit:
        shared, pos = _varint(contents, pos)
        non_shared, pos = _varint(contents, pos)
        value_len, pos = _varint(contents, pos)
        key = key[:shared] + contents[pos : pos + non_shared]
        pos += non_shared
        entries.append((key, contents[pos : pos + value_len]))
        pos += value_len
    return entries


def _block_handle(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


def _index_entries(index_path: Path) -> dict[str, dict]:
    data = index_path.read_bytes()
    if len(data) < _FOOTER_LEN:
        raise BundleError(f"{index_path}: too short to be a checkpoint index")
    footer = data[-_FOOTER_LEN:]
    (magic,) = struct.unpack_from("<Q", footer, _FOOTER_LEN - 8)
    if magic != _TABLE_MAGIC:
        raise BundleError(f"{index_path}: not a TensorFlow checkpoint index (bad table magic)")
    _, _, pos = _block_handle(footer)  # metaindex block: unused by bundles
    index_offset, index_size, _ = _block_handle(footer, pos)

    entries: dict[str, dict] = {}
    for _, handle in _block(data, index_offset, index_size, index_path):
        offset, size, _ = _block_handle(handle)
        for key, value in _block(data, offset, size, index_path):
            entries[key.decode()] = _entry(value)
    return entries


def _entry(value: bytes) -> dict:
    entry = {"dtype": 0, "shape": (), "shard_id": 0, "offset": 0, "size": 0, "crc32c": None,
             "slices": False, "header": None}
    for number, v in _proto_fields(value):
        if number == 1:
            entry["dtype"] = v
        elif number == 2:
            dims = []
            for dn, dv in _proto_fields(v):
                if dn == 2:  # TensorShapeProto.dim
                    size = dict(_proto_fields(dv)).get(1, 0)
                    dims.append(size - (1 << 64) if size >= 1 << 63 else size)
            entry["shape"] = tuple(dims)
        elif number == 3:
            entry["shard_id"] = v
        elif number == 4:
            entry["offset"] = v
        elif number == 5:
            entry["size"] = v
        elif number == 6:
            entry["crc32c"] = v
        elif number == 7:
            entry["slices"] = True
    return entry


def _prefix(path: str | Path) -> str:
    """Accept the checkpoint prefix, its ``.index`` file, or a folder holding one bundle."""
    p = Path(path)
    if p.is_dir():
        indexes = sorted(p.glob("*.index"))
        if len(indexes) != 1:
            raise BundleError(f"{p}: expected one *.index file, found {len(indexes)}")
        p = indexes[0]
    # string operations, not with_suffix: musicnn's index is named just ".index"
    # (a string, since a prefix may end in a separator, which Path would drop)
    s = str(p)
    return s[: -len(".index")] if s.endswith(".index") else s


def list_bundle(path: str | Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{tensor name: (numpy dtype name, shape)}`` of a checkpoint, without reading its data."""
    prefix = _prefix(path)
    index = _index_entries(Path(prefix + ".index"))
    out = {}
    for name, e in index.items():
        if name == "":
            continue
        dtype = _DTYPES.get(e["dtype"])
        out[name] = (dtype.name if dtype is not None else f"tf:{e['dtype']}", e["shape"])
    return out


def read_bundle(path: str | Path, *, names=None, verify: bool = True) -> dict[str, np.ndarray]:
    """Read tensors from a TF checkpoint.

    Parameters
    ----------
    path : the checkpoint prefix (``.../model.ckpt``), its ``.index`` file, or a folder that
        holds exactly one bundle (musicnn's folders store theirs with an empty prefix name).
    names : tensor names to read (default: all numeric tensors).
    verify : check each tensor's CRC32C against the index.

    Returns
    -------
    ``{name: array}`` with the stored shapes and dtypes.
    """
    prefix = _prefix(path)
    index_path = Path(prefix + ".index")
    index = _index_entries(index_path)
    header = index.pop("", None)
    if header is None:
        raise BundleError(f"{index_path}: no bundle header")
    wanted = list(index) if names is None else list(names)
    missing = [n for n in wanted if n not in index]
    if missing:
        raise BundleError(f"{index_path}: no tensor named {missing[0]!r}")

    shards: dict[int, bytes] = {}
    out = {}
    for name in wanted:
        e = index[name]
        dtype = _DTYPES.get(e["dtype"])
        if dtype is None:
            if names is None:
                continue  # strings and other non-numeric entries: not weights
            raise BundleError(f"{index_path}: tensor {name!r} has unsupported dtype {e['dtype']}")
        if e["slices"]:
            raise BundleError(f"{index_path}: tensor {name!r} is stored in slices")
        shard = e["shard_id"]
        if shard not in shards:
            pattern = f"{Path(prefix + 'x').name[:-1]}.data-{shard:05d}-of-*"
            candidates = sorted(index_path.parent.glob(pattern))
            if not candidates:
                raise BundleError(f"{index_path}: data shard {shard} not found")
            data_path = candidates[0]
            shards[shard] = data_path.read_bytes()
        raw = shards[shard][e["offset"] : e["offset"] + e["size"]]
        if len(raw) != e["size"]:
            raise BundleError(f"{index_path}: tensor {name!r} runs past the end of its data file")
        if verify and e["crc32c"] is not None and masked_crc32c(raw) != e["crc32c"]:
            raise BundleError(f"{index_path}: checksum mismatch in tensor {name!r}")
        n = int(np.prod(e["shape"], dtype=np.int64)) if e["shape"] else 1
        if n * dtype.itemsize != e["size"]:
            raise BundleError(f"{index_path}: tensor {name!r} size does not match its shape")
        out[name] = np.frombuffer(raw, dtype=dtype).reshape(e["shape"]).copy()
    return out
