"""One tick's flow columns as numpy, converted once and shared by every part of the DDoS detector.

Rates, role evidence, the sanity filter and the attack accounting all read
the same columns: each Arrow column is converted once per tick, not once per reader.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pyarrow as pa

from .. import addr


@dataclasses.dataclass
class TickColumns:
    """The columns of the tick's rows (numpy), in row order; ``rate`` is the sampling rate, at least 1."""

    table: pa.Table
    dst_hi: np.ndarray
    dst_lo: np.ndarray
    src_port: np.ndarray
    dst_port: np.ndarray
    protocol: np.ndarray
    tcp_flags: np.ndarray
    fragment: np.ndarray
    packets: np.ndarray  # float64, as sent (not sampling-corrected)
    bytes: np.ndarray  # float64, as sent
    rate: np.ndarray  # float64, sampling rate with 0 (unknown) counted as 1

    @classmethod
    def of(cls, table: pa.Table) -> TickColumns:
        """Convert every column the detector reads, once.  Ports must be the flow schema's uint16: the
        compiled passes index 2^16-entry tables with them (roles, port codes, the port grid) without
        bounds checks, so a wider column is refused here, naming it, for all of them."""
        table = table.combine_chunks()
        for name in ("src_port", "dst_port"):
            if table.schema.field(name).type != pa.uint16():
                raise TypeError(f"{name} is {table.schema.field(name).type}, not the flow schema's uint16")
        hi, lo = addr.words(table.column("dst_addr"))
        return cls(
            table,
            hi,
            lo,
            table.column("src_port").to_numpy(),
            table.column("dst_port").to_numpy(),
            table.column("protocol").to_numpy(),
            table.column("tcp_flags").to_numpy(),
            table.column("fragment").to_numpy(zero_copy_only=False),
            table.column("packets").to_numpy().astype(np.float64),
            table.column("bytes").to_numpy().astype(np.float64),
            np.maximum(table.column("sampling_rate").to_numpy().astype(np.float64), 1.0),
        )

    def __len__(self) -> int:
        return len(self.packets)

    def select(self, keep: np.ndarray) -> TickColumns:
        """The rows where ``keep`` is true (a boolean mask), table included."""
        fields = {f.name: getattr(self, f.name)[keep] for f in dataclasses.fields(self) if f.name != "table"}
        return TickColumns(self.table.filter(pa.array(keep)), **fields)

    @functools.cached_property
    def src_words(self) -> tuple[np.ndarray, np.ndarray]:
        """The source addresses as (high, low) words."""
        return addr.words(self.table.column("src_addr"))
