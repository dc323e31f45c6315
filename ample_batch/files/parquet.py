"""Parquet input: opening a file, choosing how to read its text columns, and its rows as
record batches in order (`stream.record_batches` streams every format through here or its
CSV and XLSX readers).

    >>> from ample_batch.files.inspect import inspect_input
    >>> spec = inspect_input(Path("sample_data/leads.parquet"))
    >>> [batch.num_rows for batch in parquet_batches(spec, batch_rows=800)]
    [1000, 1000]

Like `csv`, this module turns pyarrow's exceptions into `InputError`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import InputError
from .spec import CATCH_ALL_COLUMN, RESULT_COLUMN, InputSpec

WHOLE_ROW_GROUP_BYTES = 128 << 20
"""A row group is decoded whole when its uncompressed size (the file's metadata) is at most
this, and its rows at most `WHOLE_ROW_GROUP_ROWS`; else it streams batch by batch."""


WHOLE_ROW_GROUP_ROWS = 1 << 19
"""The row limit of a group decoded whole: dictionary pages make a group small on disk that
decodes to many times its size. Two such groups are in memory at once (one being parsed)."""


def parquet_file(spec_path: Path, *, dictionaries: Sequence[str] = ()) -> pq.ParquetFile:
    """Open a Parquet file, or say plainly that it is not one; `dictionaries` are read as
    Arrow dictionaries.

    >>> with parquet_file(Path("sample_data/leads.parquet")) as pf:
    ...     pf.metadata.num_rows
    2000
    """
    try:
        return pq.ParquetFile(str(spec_path), read_dictionary=list(dictionaries) or None)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(
            f"{spec_path.name}: not a readable Parquet file (truncated or corrupt: "
            f"{str(exc).splitlines()[0]}); export it again"
        ) from exc


def dictionary_encoded(spec: InputSpec) -> tuple[str, ...]:
    """The flat text columns, other than the email column, that the file holds as nothing but
    dictionary indices: read as Arrow dictionaries, a Parquet writer takes them back as they
    are instead of hashing every value again, a good part of the read and write CPU.

    Judged from the first row group's sizes: an index is at most 2 bytes a row on average
    beside a dictionary page of at most 1 MiB (a column that outgrew its dictionary is
    mostly plain values, which are larger). A name with a dot is left out: pyarrow would
    take it for a path into a nested column.

    >>> from ample_batch.files.inspect import inspect_input
    >>> dictionary_encoded(inspect_input(Path("sample_data/leads.parquet")))[:4]
    ('First Name', 'Last Name', 'Company', 'Title')
    """
    if spec.format != "parquet":
        return ()
    pf = parquet_file(spec.path)
    try:
        meta, schema = pf.metadata, pf.schema_arrow
        if not meta.num_row_groups:
            return ()
        group = meta.row_group(0)
        leaves = [group.column(i) for i in range(group.num_columns)]
        chosen = []
        for field in schema:
            name = field.name
            if name == spec.email_column or "." in name or schema.names.count(name) != 1:
                continue
            # Not is_text: large_string and string_view columns come back from a dictionary
            # page as dictionary<string>, another type; binary ones come back as they were.
            if not (pa.types.is_string(field.type) or pa.types.is_binary(field.type)):
                continue
            leaf = next((c for c in leaves if c.path_in_schema == name), None)
            if (
                leaf is not None
                and leaf.has_dictionary_page
                and leaf.total_uncompressed_size <= 2 * group.num_rows + (1 << 20)
            ):
                chosen.append(name)
        return tuple(chosen)
    finally:
        pf.close()


def parquet_batches(
    spec: InputSpec,
    *,
    batch_rows: int,
    columns: list[str] | None = None,
    dictionaries: Sequence[str] = (),
) -> Iterator[pa.RecordBatch]:
    """Stream a Parquet file's batches with its own schema (`dictionaries`: these columns as
    Arrow dictionaries).

    >>> from ample_batch.files.inspect import inspect_input
    >>> spec = inspect_input(Path("sample_data/leads.parquet"))
    >>> next(parquet_batches(spec, batch_rows=500, columns=["Email"])).shape
    (500, 1)

    A row group of modest size is decoded whole, each column on its own thread, and then cut
    into batches: less CPU than decoding batch by batch. A larger one streams batch by batch,
    so memory stays bounded by the batch size.
    """
    pf = parquet_file(spec.path, dictionaries=dictionaries)
    try:
        for group in range(pf.metadata.num_row_groups):
            info = pf.metadata.row_group(group)
            # Every column's size, even when only some are read: a bound that is never low.
            if (
                info.total_byte_size <= WHOLE_ROW_GROUP_BYTES
                and info.num_rows <= WHOLE_ROW_GROUP_ROWS
            ):
                table = pf.read_row_group(group, columns=columns, use_threads=True)
                # Even pieces of at least `batch_rows`: `regroup` then joins none of them to
                # the next group's, whose dictionaries differ.
                pieces = max(1, table.num_rows // batch_rows)
                yield from table.to_batches(max_chunksize=max(1, -(-table.num_rows // pieces)))
            else:
                yield from pf.iter_batches(
                    batch_size=batch_rows, row_groups=[group], columns=columns, use_threads=True
                )
    except (pa.ArrowException, OSError) as exc:
        raise InputError(
            f"{spec.path.name}: a Parquet page cannot be read (truncated or corrupt: "
            f"{str(exc).splitlines()[0]}); export it again"
        ) from exc
    finally:
        pf.close()


DICTIONARY_SAMPLE_ROWS = 65_536
"""Rows of the first batch sampled to decide which Parquet columns get a dictionary."""


def _catch_all_bool(column: pa.Array) -> pa.Array:
    if pa.types.is_boolean(column.type):
        return column
    return pc.if_else(
        pc.equal(column, "true"),
        True,
        pc.if_else(pc.equal(column, "false"), False, pa.scalar(None, pa.bool_())),
    )


@dataclass(frozen=True)
class _ParquetPlan:
    """How the output Parquet file is written, taken from the input where it is Parquet."""

    schema: pa.Schema | None
    """The input's own schema, kept exactly; None for CSV or XLSX input (all text)."""
    codec: str
    """The input's compression (zstd for CSV or XLSX input)."""
    row_group: int
    """Rows per row group: the input's, within 65,536 and 1,048,576."""
    nested_leaves: tuple[str, ...] = ()
    """Leaf paths of the input's nested columns, which always get a dictionary (the writer's
    default): a sample of a list or struct column says little about its leaves."""


def _parquet_plan(spec: InputSpec) -> _ParquetPlan:
    """The input's own schema (Parquet input), its compression and a row-group size."""
    if spec.format != "parquet":
        return _ParquetPlan(None, "zstd", 256_000)
    pf = pq.ParquetFile(str(spec.path))
    try:
        meta = pf.metadata
        codec = "snappy"
        group = 256_000
        if meta.num_row_groups and meta.num_columns:
            codec = meta.row_group(0).column(0).compression.lower()
            group = meta.row_group(0).num_rows
        codec = codec if codec in {"snappy", "gzip", "brotli", "zstd", "lz4", "none"} else "snappy"
        flat = set(pf.schema_arrow.names)
        leaves = (pf.schema.column(i).path for i in range(len(pf.schema)))
        return _ParquetPlan(
            pf.schema_arrow,
            codec,
            min(max(group, 65_536), 1 << 20),
            tuple(path for path in leaves if path not in flat),
        )
    finally:
        pf.close()


def _dictionary_columns(batch: pa.RecordBatch, nested_leaves: tuple[str, ...]) -> list[str]:
    """The columns worth a dictionary: flat ones whose first rows mostly repeat, and nested
    leaves.

    A dictionary on a column of mostly distinct values (emails, phones, timestamps) is built,
    outgrows its page and is dropped for plain encoding: trying it on every column slowed the
    Parquet writer and wrote a larger file.
    """
    sample = batch.slice(0, DICTIONARY_SAMPLE_ROWS)
    chosen = list(nested_leaves)
    for field, column in zip(sample.schema, sample.columns, strict=True):
        if pa.types.is_nested(field.type):
            continue
        if pa.types.is_dictionary(field.type) or _mostly_repeats(column):
            chosen.append(field.name)
    return chosen


def _mostly_repeats(column: pa.Array) -> bool:
    try:
        return bool(pc.count_distinct(column, mode="all").as_py() * 2 <= len(column))
    except pa.ArrowNotImplementedError:  # a type without the kernel: the writer's default
        return True


def _as_read(schema: pa.Schema, read: pa.Schema) -> tuple[pa.Schema, list[int]]:
    """The schema to write the batches with, and the columns to decode before writing.

    A text column read as an Arrow dictionary (see `dictionary_encoded`) is written
    as one: the writer keeps its indices instead of hashing every value again. The file must
    still say the column's own type: its stored Arrow schema is then written by hand, and only
    when the Parquet schema comes out the same as for the plain column (else it is decoded).
    """
    fields = list(schema)
    for i, (mine, theirs) in enumerate(zip(schema, read, strict=True)):
        if pa.types.is_dictionary(theirs.type) and not pa.types.is_dictionary(mine.type):
            fields[i] = mine.with_type(theirs.type)
    taken = pa.schema(fields, metadata=schema.metadata)
    if taken == schema or _same_parquet_schema(taken, schema):
        return taken, []
    return schema, [i for i, f in enumerate(fields) if f.type != schema.field(i).type]


def _same_parquet_schema(taken: pa.Schema, schema: pa.Schema) -> bool:
    """Whether `taken`, written without its Arrow schema, gives the Parquet schema and the
    Arrow schema that `schema` would."""
    plain, manual = pa.BufferOutputStream(), pa.BufferOutputStream()
    try:
        pq.write_table(schema.empty_table(), plain)
        with pq.ParquetWriter(manual, taken, store_schema=False) as writer:
            writer.add_key_value_metadata(_stored_schema(schema))
            writer.write_table(taken.empty_table())
    except pa.ArrowException:  # a type Parquet cannot hold: the plain writer says so
        return False
    theirs = pq.ParquetFile(pa.BufferReader(plain.getvalue()))
    ours = pq.ParquetFile(pa.BufferReader(manual.getvalue()))
    return bool(
        ours.schema.equals(theirs.schema)
        and ours.schema_arrow.equals(theirs.schema_arrow, check_metadata=True)
    )


def _stored_schema(schema: pa.Schema) -> dict[bytes, bytes]:
    """The key-value metadata Arrow stores for `schema`: its own, and the schema itself
    (Arrow IPC, base64) under `ARROW:schema`, which readers use to restore Arrow types."""
    metadata = dict(schema.metadata or {})
    metadata[b"ARROW:schema"] = base64.b64encode(schema.serialize().to_pybytes())
    return metadata


def write_parquet(
    spec: InputSpec,
    batches: Iterator[pa.RecordBatch],
    tmp: Path,
    *,
    appended: Sequence[str] = (RESULT_COLUMN, CATCH_ALL_COLUMN),
) -> int:
    """Write enriched batches (the input's columns, then the `appended` ones: the result,
    the catch-all flag, any more as text) to `tmp` in the input's schema; rows written."""
    plan = _parquet_plan(spec)
    extra = len(appended)
    original, group = plan.schema, plan.row_group
    writer: pq.ParquetWriter | None = None
    buffered: list[pa.RecordBatch] = []
    held = rows = 0
    schema: pa.Schema | None = None
    try:
        for batch in batches:
            if schema is None:
                base = original
                if base is None:
                    base = pa.schema(list(batch.schema)[: batch.num_columns - extra])
                schema = _with_outputs(base, appended)
                taken, decode = _as_read(schema, batch.schema)
                writer = pq.ParquetWriter(
                    str(tmp),
                    taken,
                    compression=plan.codec,
                    use_dictionary=_dictionary_columns(batch, plan.nested_leaves),
                    store_schema=taken == schema,
                )
                if taken != schema:  # the schema the file would have stored for plain columns
                    writer.add_key_value_metadata(_stored_schema(schema))
            columns = list(batch.columns)
            at = batch.num_columns - extra + 1  # the catch-all flag: text for CSV and XLSX input
            columns[at] = _catch_all_bool(columns[at])
            for i in decode:
                columns[i] = columns[i].cast(schema.field(i).type)
            buffered.append(pa.RecordBatch.from_arrays(columns, schema=taken))
            held += batch.num_rows
            rows += batch.num_rows
            while held >= group:  # row groups of the input's first one's size, whatever the batches
                assert writer is not None
                table = pa.Table.from_batches(buffered)
                _write_group(writer, table.slice(0, group))
                rest = table.slice(group)
                buffered, held = rest.to_batches(), rest.num_rows
        if writer is None:
            return _empty_parquet(spec, tmp, original, appended)
        if buffered:
            _write_group(writer, pa.Table.from_batches(buffered))
    except pa.ArrowException as exc:
        raise InputError(f"cannot write Parquet: {str(exc).splitlines()[0]}; try .csv") from exc
    finally:
        if writer is not None:
            writer.close()
    return rows


def _with_outputs(base: pa.Schema, appended: Sequence[str]) -> pa.Schema:
    """The output schema: the input's columns, then the result text, a nullable boolean and
    any further appended column as text."""
    schema = base.append(pa.field(appended[0], pa.string())).append(
        pa.field(appended[1], pa.bool_())
    )
    for name in appended[2:]:
        schema = schema.append(pa.field(name, pa.string()))
    return schema


def _write_group(writer: pq.ParquetWriter, table: pa.Table) -> None:
    """Write `table` as one row group, each dictionary column with one dictionary: where the
    dictionary changes within a group, Arrow's writer writes the rest of it as plain values."""
    if any(pa.types.is_dictionary(t) for t in table.schema.types):
        table = table.unify_dictionaries()
    writer.write_table(table, row_group_size=max(1, table.num_rows))


def _empty_parquet(
    spec: InputSpec, tmp: Path, original: pa.Schema | None, appended: Sequence[str]
) -> int:
    base = original or pa.schema([pa.field(c, pa.string()) for c in spec.columns])
    pq.write_table(_with_outputs(base, appended).empty_table(), str(tmp))
    return 0
