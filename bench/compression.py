"""zlib against zlib-ng for what the renderer does: ``python -m bench.compression``.

Deflate (raw, full flush per 2,048-object slice) at levels 1 to 3, CRC-32 and
``crc32_combine`` over exposition-like text (node series of many clusters); prints the CPU per MB,
the compressed size and the time of one combine (zlib-ng's against the pure-Python one the renderer
used before, kept here for the comparison).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from typing import Any

from zlib_ng import zlib_ng

from exporter.metrics.render import GZIP_LEVEL


def sample(lines: int = 200_000) -> list[bytes]:
    rows = [
        f'cce_node_status_phase{{project_id="0123456789abcdef0123456789abcdef",cluster_id='
        f'"{i // 200:08x}-0000-4000-8000-000000000000",node_id="{i:08x}-1111-4000-8000-'
        f'000000000000",node="node-{i}",phase="Active"}} 1\n'
        for i in range(lines)
    ]
    return [("".join(rows[i : i + 2048])).encode() for i in range(0, lines, 2048)]


def deflate_seconds(module: Any, parts: list[bytes], level: int) -> tuple[float, int]:
    start = time.process_time()
    compressor = module.compressobj(level, module.DEFLATED, -module.MAX_WBITS)
    size = 0
    for part in parts:
        size += len(compressor.compress(part))
        size += len(compressor.flush(module.Z_FULL_FLUSH))
    return time.process_time() - start, size


def _gf2_times(matrix: list[int], vector: int) -> int:
    total = 0
    row = 0
    while vector:
        if vector & 1:
            total ^= matrix[row]
        vector >>= 1
        row += 1
    return total


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, matrix[n]) for n in range(32)]


def python_crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """zlib's algorithm in Python (what the renderer used before zlib-ng)."""
    one_bit = [0xEDB88320] + [1 << n for n in range(31)]
    operator = _gf2_square(_gf2_square(one_bit))
    while len2:
        operator = _gf2_square(operator)
        if len2 & 1:
            crc1 = _gf2_times(operator, crc1)
        len2 >>= 1
    return crc1 ^ crc2


def crc_seconds(module: Any, parts: list[bytes]) -> float:
    start = time.process_time()
    crc = 0
    for part in parts:
        crc = module.crc32(part, crc)
    return time.process_time() - start


def combine_seconds(combine: Callable[[int, int, int], int], n: int = 200) -> float:
    start = time.process_time()
    for i in range(n):
        combine(0x12345678 + i, 0x9ABCDEF0, 1_000_000 + i)
    return (time.process_time() - start) / n


def main() -> int:
    parts = sample()
    mb = sum(map(len, parts)) / 1e6
    print(f"{mb:.0f} MB of exposition text in {len(parts)} slices")
    for name, module in (("zlib", zlib), ("zlib-ng", zlib_ng)):
        c = min(crc_seconds(module, parts) for _ in range(3))
        print(f"{name:8} crc32 {c / mb * 1000:6.3f} ms/MB")
        for level in (1, 2, 3):
            runs = [deflate_seconds(module, parts, level) for _ in range(3)]
            d, size = min(r[0] for r in runs), runs[0][1]
            mark = " (the renderer's)" if module is zlib_ng and level == GZIP_LEVEL else ""
            print(
                f"{name:8} deflate level {level}: {d / mb * 1000:6.2f} ms/MB, "
                f"{size / 1e6:5.2f} MB{mark}"
            )
    combine = combine_seconds(python_crc32_combine) * 1e6
    print(f"crc32_combine  pure Python {combine:8.1f} us")
    print(f"crc32_combine  zlib-ng     {combine_seconds(zlib_ng.crc32_combine) * 1e6:8.1f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
