"""Where a transfer reads from: one seam for PostgreSQL, MariaDB/MySQL and files.

The engine asks a `Source` for a plan, key ranges and readers on one consistent view of the data; a
reader hands back each chunk as COPY data in the plan's format, so every destination writer works
unchanged whatever the source.
"""

from etl_platform.transfer.sources.base import ChunkEnd, ChunkReader, Source, SourceChunk

__all__ = ["ChunkEnd", "ChunkReader", "Source", "SourceChunk"]
